// Beacon's dashboard: plain JavaScript and hand-drawn SVG, no dependencies.
// The view's state (site, range, metric, filters, attribution model, page) lives
// in the URL, so a view can be shared and reloaded.
(() => {
  'use strict';
  const doc = document;
  const body = doc.body;
  const mode = body.dataset.mode; // app | share | locked
  const main = doc.getElementById('app');
  const nav = doc.getElementById('nav');
  const lang = navigator.language || 'en';
  const nf = new Intl.NumberFormat(lang);
  const nf1 = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat(lang, { maximumFractionDigits: 2 });
  const TOP = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration', 'conversions', 'revenue'];
  const LABEL = {
    visitors: 'Visitors', visits: 'Visits', pageviews: 'Pageviews', views_per_visit: 'Views per visit',
    bounce_rate: 'Bounce rate', visit_duration: 'Visit duration', conversions: 'Conversions', revenue: 'Revenue',
  };
  const PANELS = [
    ['Sources', ['source', 'channel', 'referrer']],
    ['Campaigns', ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term']],
    ['Pages', ['page', 'entry_page', 'exit_page']],
    ['Locations', ['country', 'region', 'city']],
    ['Devices', ['device', 'browser', 'os']],
    ['Companies', ['company', 'visitor_type']],
  ];
  const MODELS = ['first_touch', 'last_touch', 'last_non_direct', 'linear', 'time_decay', 'position_based'];
  const RANGES = [['day', 'Today'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['month', 'This month'], ['all', 'All time']];
  let me = null;
  let csrf = sessionStorage.getItem('beacon_csrf') || '';
  let liveTimer = 0;
  let currency = 'USD';

  // ---------- helpers ----------
  const el = (tag, attrs, ...kids) => {
    const e = doc.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'text') e.textContent = v;
      else if (k === 'style') {
        // Through the CSSOM: the page's CSP allows no inline style attributes.
        for (const part of String(v).split(';')) {
          const i = part.indexOf(':');
          if (i > 0) e.style.setProperty(part.slice(0, i).trim(), part.slice(i + 1).trim());
        }
      }
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
    return e;
  };
  const svg = (tag, attrs) => {
    const e = doc.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  const params = () => new URLSearchParams(location.search);
  const setParams = (change, push = true) => {
    const p = params();
    for (const [k, v] of Object.entries(change)) {
      p.delete(k);
      if (Array.isArray(v)) v.forEach((x) => p.append(k, x));
      else if (v !== null && v !== undefined && v !== '') p.set(k, v);
    }
    const url = `${location.pathname}?${p}`;
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
    render();
  };
  const site = () => (mode === 'share' ? body.dataset.site : params().get('site') || (me && me.sites[0] && me.sites[0].domain));
  const siteInfo = () => (me && me.sites.find((s) => s.domain === site())) || { currency: 'USD' };
  const range = () => params().get('range') || '30d';
  const metric = () => (TOP.includes(params().get('metric')) ? params().get('metric') : 'visitors');
  const filters = () => params().getAll('f').map((f) => {
    const i = f.indexOf(':');
    return [f.slice(0, i), f.slice(i + 1)];
  });
  const filterJson = () => filters().map(([d, v]) => ['is', d, [v]]);
  const dateRange = () => {
    const r = range();
    return r.includes(',') ? r.split(',') : r;
  };

  async function api(path, data, method) {
    const opts = { method: method || (data === undefined ? 'GET' : 'POST'), headers: {}, credentials: 'same-origin' };
    if (data !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(data);
    }
    if (opts.method !== 'GET' && csrf) opts.headers['X-CSRF-Token'] = csrf;
    if (mode === 'share' && body.dataset.password) opts.headers['X-Share-Password'] = body.dataset.password;
    const r = await fetch(path, opts);
    let j = null;
    try { j = await r.json(); } catch (_) { j = null; }
    if (!r.ok) {
      const e = new Error((j && j.error) || `the server answered ${r.status}`);
      e.status = r.status;
      throw e;
    }
    return j;
  }
  const query = (q) => (mode === 'share'
    ? api(`/share/${body.dataset.slug}/query`, q)
    : api('/api/v1/query', Object.assign({ site: site() }, q)));

  const fmt = (m, v) => {
    if (v === null || v === undefined) return '–';
    if (m === 'bounce_rate' || m === 'conversion_rate') return `${nf1.format(v)} %`;
    if (m === 'visit_duration') {
      const s = Math.round(v);
      return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
    }
    if (m === 'revenue') {
      try { return new Intl.NumberFormat(lang, { style: 'currency', currency }).format(v); } catch (_) { return nf2.format(v); }
    }
    if (m === 'views_per_visit') return nf2.format(v);
    return nf.format(v);
  };

  // Runs `fill(card)` with a loading state, and an error in words if it fails.
  // When the last panel of a render is drawn, `data-rendered-ms` on <body> says
  // when (ms since the page's navigation started), for tests and benchmarks.
  let pending = 0;
  const done = () => {
    if (pending === 0 && body.dataset.loaded === 'true' && !body.dataset.renderedMs) body.dataset.renderedMs = String(Math.round(performance.now()));
  };
  async function panel(card, fill) {
    const slot = card.querySelector('.slot') || card;
    slot.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
    pending += 1;
    try {
      await fill(slot);
    } catch (e) {
      slot.replaceChildren(el('p', { class: 'error', role: 'alert', text: `Could not load this: ${e.message}` }));
    } finally {
      pending -= 1;
      done();
    }
  }
  const empty = (slot, what) => slot.replaceChildren(el('p', { class: 'muted', text: what || 'No data for this range.' }));

  // The range before `[from, to]`, of the same length.
  const previous = (from, to) => {
    const d = (s) => new Date(`${s}T00:00:00Z`);
    const days = Math.round((d(to) - d(from)) / 864e5) + 1;
    const end = new Date(d(from).getTime() - 864e5);
    const start = new Date(end.getTime() - (days - 1) * 864e5);
    const iso = (x) => x.toISOString().slice(0, 10);
    return [iso(start), iso(end)];
  };

  // ---------- header ----------
  function header() {
    nav.replaceChildren();
    if (mode === 'locked') return;
    if (mode === 'app' && me) {
      if (me.sites.length > 1) {
        const pick = el('select', { 'aria-label': 'Site', id: 'site-picker', onchange: (e) => setParams({ site: e.target.value, f: [] }) },
          me.sites.map((s) => el('option', { value: s.domain, selected: s.domain === site() }, s.domain)));
        nav.append(pick);
      } else if (me.sites.length === 1) {
        nav.append(el('span', { class: 'muted', text: me.sites[0].domain }));
      }
    }
    const rangeSel = el('select', { 'aria-label': 'Date range', id: 'range', onchange: (e) => setParams({ range: e.target.value }) },
      RANGES.map(([v, t]) => el('option', { value: v, selected: v === range() }, t)));
    if (!RANGES.some(([v]) => v === range())) rangeSel.append(el('option', { value: range(), selected: true }, range().replace(',', ' – ')));
    nav.append(rangeSel);
    if (mode === 'app' && me) {
      const view = params().get('view');
      if (me.scope === 'write') nav.append(view === 'settings'
        ? el('a', { href: `/?site=${encodeURIComponent(site() || '')}`, id: 'to-dashboard' }, 'Dashboard')
        : el('a', { href: `/?site=${encodeURIComponent(site() || '')}&view=settings`, id: 'to-settings' }, 'Settings'));
      if (me.email) {
        nav.append(el('span', { class: 'muted' }, `${me.email} (${me.role})`),
          el('button', { id: 'logout', onclick: async () => { await api('/api/v1/logout', {}); sessionStorage.removeItem('beacon_csrf'); location.href = '/'; } }, 'Log out'));
      }
    }
  }

  // ---------- login ----------
  function login(message) {
    nav.replaceChildren();
    const err = el('p', { class: 'error', role: 'alert' }, message || '');
    const form = el('form', { class: 'card login', id: 'login' },
      el('h1', { text: 'Log in' }),
      el('label', {}, 'E-mail address', el('input', { type: 'email', name: 'email', autocomplete: 'username', required: true })),
      el('label', {}, 'Password', el('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true })),
      err, el('button', { type: 'submit' }, 'Log in'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(form);
      try {
        const r = await api('/api/v1/login', { email: f.get('email'), password: f.get('password') });
        csrf = r.csrf;
        sessionStorage.setItem('beacon_csrf', csrf);
        await start();
      } catch (x) {
        err.textContent = x.message;
      }
    });
    main.replaceChildren(form);
  }

  // ---------- dashboard ----------
  async function topRow(row) {
    const q = { date_range: dateRange(), metrics: TOP, filters: filterJson() };
    const r = await query(q);
    currency = (r.meta && r.meta.currency) || siteInfo().currency || currency;
    const values = (r.results[0] && r.results[0].metrics) || TOP.map(() => 0);
    let prev = null;
    const dr = r.query && r.query.date_range;
    if (Array.isArray(dr) && range() !== 'all') {
      try {
        const p = await query(Object.assign({}, q, { date_range: previous(dr[0], dr[1]) }));
        prev = (p.results[0] && p.results[0].metrics) || TOP.map(() => 0);
      } catch (_) { prev = null; }
    }
    row.replaceChildren(...TOP.map((m, i) => {
      const v = values[i];
      let change = null;
      if (prev && typeof prev[i] === 'number' && prev[i] !== 0) {
        const pct = ((v - prev[i]) / prev[i]) * 100;
        const good = m === 'bounce_rate' ? pct <= 0 : pct >= 0;
        change = el('span', { class: `change ${good ? 'up' : 'down'}`, title: `previous period: ${fmt(m, prev[i])}` },
          `${pct >= 0 ? '▲' : '▼'} ${nf1.format(Math.abs(pct))} %`);
      } else if (prev) {
        change = el('span', { class: 'change muted' }, 'new');
      }
      return el('button', {
        class: `metric${m === metric() ? ' on' : ''}`, 'data-metric': m, 'data-value': String(v),
        'aria-pressed': m === metric() ? 'true' : 'false', onclick: () => setParams({ metric: m }),
      }, el('span', { text: LABEL[m] }), el('b', { text: fmt(m, v) }), change);
    }));
    return r;
  }

  const bucketFor = (from, to) => {
    if (range() === 'day' || from === to) return 'time:hour';
    const days = (new Date(to) - new Date(from)) / 864e5 + 1;
    if (days <= 92) return 'time:day';
    if (days <= 400) return 'time:week';
    return 'time:month';
  };

  async function chart(slot) {
    const m = metric();
    const first = await query({ date_range: dateRange(), metrics: [m], filters: filterJson() });
    const dr = first.query.date_range;
    const bucket = bucketFor(dr[0], dr[1]);
    const q = { date_range: dr, metrics: [m], dimensions: [bucket], filters: filterJson(), limit: 1000 };
    const cur = await query(q);
    const series = (res) => res.results.map((x) => [x.dimensions[0], x.metrics[0]]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    let points = series(cur);
    if (bucket === 'time:day') {
      const byDay = new Map(points);
      points = [];
      for (let t = new Date(`${dr[0]}T00:00:00Z`); t <= new Date(`${dr[1]}T00:00:00Z`); t = new Date(t.getTime() + 864e5)) {
        const k = t.toISOString().slice(0, 10);
        points.push([k, byDay.get(k) || 0]);
      }
    }
    let prevPoints = [];
    if (range() !== 'all') {
      try {
        const p = await query(Object.assign({}, q, { date_range: previous(dr[0], dr[1]) }));
        prevPoints = series(p);
        if (bucket === 'time:day') {
          const byDay = new Map(prevPoints);
          const [pf] = previous(dr[0], dr[1]);
          prevPoints = points.map((_, i) => {
            const k = new Date(new Date(`${pf}T00:00:00Z`).getTime() + i * 864e5).toISOString().slice(0, 10);
            return [k, byDay.get(k) || 0];
          });
        }
      } catch (_) { prevPoints = []; }
    }
    const notes = cur.notes || [];
    if (!points.length) { empty(slot); return notes; }
    const W = 800, H = 220, L = 44, B = 22, T = 10;
    const max = Math.max(1, ...points.map((x) => x[1]), ...prevPoints.map((x) => x[1]));
    const x = (i) => L + (points.length === 1 ? (W - L) / 2 : (i * (W - L - 8)) / (points.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${LABEL[m]} over time, previous period dashed` });
    s.append(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
    for (const f of [0, 0.5, 1]) {
      const t = svg('text', { x: 2, y: y(max * f) + 4 });
      t.textContent = fmt(m, m === 'visitors' || m === 'visits' || m === 'pageviews' || m === 'conversions' ? Math.round(max * f) : max * f);
      s.append(t);
    }
    const line = (pts, cls) => svg('polyline', { class: cls, points: pts.map((p, i) => `${x(i)},${y(p[1])}`).join(' ') });
    if (prevPoints.length) s.append(line(prevPoints.slice(0, points.length), 'prev'));
    s.append(line(points, 'cur'));
    const step = Math.max(1, Math.ceil(points.length / 8));
    points.forEach((p, i) => {
      if (i % step) return;
      const t = svg('text', { x: x(i) - 14, y: H - 6 });
      t.textContent = bucket === 'time:hour' ? p[0].slice(11, 16) : p[0].slice(5);
      s.append(t);
      const dot = svg('circle', { cx: x(i), cy: y(p[1]), r: 2.5, fill: 'currentColor' });
      const title = svg('title', {});
      title.textContent = `${p[0]}: ${fmt(m, p[1])}`;
      dot.append(title);
      s.append(dot);
    });
    for (const n of notes) {
      const i = points.findIndex((p) => p[0].slice(0, 10) >= n.date);
      if (i < 0) continue;
      const g = svg('g', { class: 'note-marker', 'data-note': n.id, tabindex: 0 });
      const title = svg('title', {});
      title.textContent = `${n.date}: ${n.text}`;
      g.append(svg('line', { x1: x(i), y1: T, x2: x(i), y2: H - B, class: 'note' }), svg('circle', { cx: x(i), cy: T + 3, r: 4, class: 'note-dot' }), title);
      g.addEventListener('click', () => editNote(n));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); editNote(n); } });
      s.append(g);
    }
    slot.replaceChildren(s, el('div', { class: 'legend' }, el('span', {}, `— ${LABEL[m]}`), prevPoints.length ? el('span', {}, '- - previous period') : null, notes.length ? el('span', {}, `| ${notes.length} note${notes.length > 1 ? 's' : ''}`) : null));
    return notes;
  }

  function chips() {
    const f = filters();
    if (!f.length) return null;
    return el('div', { class: 'chips', id: 'filters' }, f.map(([d, v], i) => el('button', {
      class: 'chip', 'data-filter': `${d}:${v}`, 'aria-label': `Remove filter ${d} is ${v}`,
      onclick: () => setParams({ f: params().getAll('f').filter((_, j) => j !== i) }),
    }, `${d.replace('_', ' ')} is ${v} ×`)));
  }

  function breakdown(title, dims) {
    const key = `tab_${title.toLowerCase()}`;
    const chosen = dims.includes(params().get(key)) ? params().get(key) : dims[0];
    const card = el('section', { class: 'card', 'data-panel': title.toLowerCase() },
      el('h2', { text: title }),
      el('div', { class: 'tabs', role: 'tablist' }, dims.map((d) => el('button', {
        role: 'tab', 'aria-selected': d === chosen ? 'true' : 'false', onclick: () => setParams({ [key]: d }, false),
      }, d.replace(/_/g, ' ')))),
      el('div', { class: 'slot' }));
    panel(card, async (slot) => {
      const r = await query({ date_range: dateRange(), metrics: ['visitors'], dimensions: [chosen], filters: filterJson(), limit: 10 });
      if (!r.results.length) return empty(slot);
      const top = Math.max(1, ...r.results.map((x) => x.metrics[0]));
      slot.replaceChildren(el('ul', { class: 'rows' }, r.results.map((x) => {
        const v = x.dimensions[0];
        const label = v === null ? '(none)' : String(v);
        return el('li', {}, el('button', {
          class: 'row', 'data-dimension': chosen, 'data-value': v === null ? '' : v, disabled: v === null,
          title: v === null ? 'No value' : `Filter by ${chosen} ${label}`,
          onclick: () => setParams({ f: [...params().getAll('f'), `${chosen}:${v}`] }),
        }, el('i', { class: 'fill', style: `width:${(100 * x.metrics[0]) / top}%` }), el('span', { text: label }), el('span', { text: nf.format(x.metrics[0]) })));
      })));
    });
    return card;
  }

  function quality() {
    const card = el('section', { class: 'card', 'data-panel': 'quality' }, el('h2', { text: 'Traffic quality' }), el('div', { class: 'slot' }));
    panel(card, async (slot) => {
      const r = await query({ date_range: dateRange(), metrics: ['visitors'], dimensions: ['visitor_type'], filters: filterJson(), include_bots: true, limit: 10 });
      if (!r.results.length) return empty(slot);
      slot.replaceChildren(el('table', {}, el('tr', {}, el('th', {}, 'Visitor type'), el('th', {}, 'Visitors')),
        r.results.map((x) => el('tr', {}, el('td', {}, x.dimensions[0] || '(unknown)'), el('td', {}, nf.format(x.metrics[0]))))),
      el('p', { class: 'muted', text: 'Bots and data-centre traffic are counted here, apart; every other number leaves them out.' }));
    });
    return card;
  }

  function realtime() {
    const card = el('section', { class: 'card', 'data-panel': 'realtime' }, el('h2', { text: 'Right now' }), el('div', { class: 'slot' }));
    const tick = () => panel(card, async (slot) => {
      const r = await api(`/api/v1/realtime?site=${encodeURIComponent(site())}`);
      slot.replaceChildren(el('p', { class: 'live' }, el('i', {}), el('b', { id: 'realtime-visitors' }, nf.format(r.visitors)), ' visitors in the last 5 minutes'),
        r.pages.length ? el('ul', { class: 'rows' }, r.pages.slice(0, 5).map((p) => el('li', {}, `${p.page} · ${nf.format(p.visitors)}`))) : '');
    });
    tick();
    clearInterval(liveTimer);
    liveTimer = setInterval(tick, 15000);
    return card;
  }

  function goalsAndFunnels() {
    const card = el('section', { class: 'card', 'data-panel': 'goals' }, el('h2', { text: 'Goals and funnels' }), el('div', { class: 'slot' }));
    panel(card, async (slot) => {
      const out = [];
      const saved = await api(`/api/v1/saved-goals?site=${encodeURIComponent(site())}`);
      const g = saved.goals.length ? await api('/api/v1/goals', { site: site(), date_range: dateRange(), goals: saved.goals }) : { goals: [] };
      if (g.goals.length) {
        out.push(el('table', {}, el('tr', {}, el('th', {}, 'Goal'), el('th', {}, 'Conversions'), el('th', {}, 'Rate'), el('th', {}, 'Value')),
          g.goals.map((x) => el('tr', {}, el('td', {}, x.name), el('td', {}, nf.format(x.conversions)), el('td', {}, fmt('conversion_rate', x.conversion_rate)), el('td', {}, x.value ? `${x.value.amount} ${x.value.currency}` : '–')))));
      }
      const f = await api(`/api/v1/funnels?site=${encodeURIComponent(site())}`);
      for (const saved of f.funnels) {
        const r = await api('/api/v1/funnel', { site: site(), date_range: dateRange(), steps: saved.steps, window: saved.window });
        out.push(el('div', { class: 'funnel', 'data-funnel': saved.name }, el('h2', { text: saved.name }), r.steps.map((st) => el('div', { class: 'step' },
          el('span', { text: st.label }), el('span', { class: 'track', title: `${fmt('conversion_rate', st.conversion_rate)} of step 1` }, el('i', { style: `width:${st.conversion_rate}%` })),
          el('span', {}, `${nf.format(st.visitors)} · −${nf1.format(st.drop_off)} %`)))));
      }
      if (!out.length) return empty(slot, 'No goals or funnels saved for this site yet.');
      if (filters().length) out.push(el('p', { class: 'muted', text: 'Goals and funnels count the whole site: filters do not apply to them.' }));
      slot.replaceChildren(...out);
    });
    return card;
  }

  function revenue() {
    const model = MODELS.includes(params().get('model')) ? params().get('model') : 'first_touch';
    const windowDays = Number(params().get('window')) || 30;
    const card = el('section', { class: 'card', 'data-panel': 'revenue' }, el('h2', { text: 'Revenue by source' }),
      el('form', { class: 'inline', onsubmit: (e) => e.preventDefault() },
        el('label', {}, 'Model', el('select', { id: 'model', onchange: (e) => setParams({ model: e.target.value }) },
          MODELS.map((m) => el('option', { value: m, selected: m === model }, m.replace(/_/g, ' '))))),
        el('label', {}, 'Window', el('input', { id: 'window', type: 'number', min: 1, max: 365, value: windowDays, onchange: (e) => setParams({ window: e.target.value }) }), 'days')),
      el('div', { class: 'slot' }));
    panel(card, async (slot) => {
      const r = await query({ date_range: dateRange(), metrics: ['revenue', 'conversions'], dimensions: ['source'], filters: filterJson(), attribution: { model, window_days: windowDays }, limit: 10 });
      if (!r.results.length) return empty(slot, 'No purchases in this range.');
      slot.replaceChildren(el('table', { id: 'revenue-table', 'data-model': model }, el('tr', {}, el('th', {}, 'Source'), el('th', {}, 'Revenue'), el('th', {}, 'Conversions')),
        r.results.map((x) => el('tr', { 'data-source': x.dimensions[0] || '' }, el('td', {}, x.dimensions[0] || 'Direct / none'),
          el('td', { 'data-value': String(x.metrics[0]) }, fmt('revenue', x.metrics[0])), el('td', {}, nf2.format(x.metrics[1]))))));
    });
    return card;
  }

  let notesCard = null;
  function notesPanel(notes) {
    const canWrite = me && me.scope === 'write';
    const list = el('ul', { class: 'rows' }, notes.map((n) => el('li', { 'data-note': n.id }, `${n.date} · ${n.text}`,
      n.tags && n.tags.length ? el('span', { class: 'muted' }, ` [${n.tags.join(', ')}]`) : null,
      canWrite ? el('button', { onclick: () => editNote(n), 'aria-label': `Edit note of ${n.date}` }, 'Edit') : null)));
    const form = canWrite ? el('form', { class: 'inline', id: 'note-form' },
      el('input', { type: 'date', name: 'date', required: true, 'aria-label': 'Date', value: new Date().toISOString().slice(0, 10) }),
      el('input', { type: 'text', name: 'text', required: true, placeholder: 'What happened', 'aria-label': 'Note' }),
      el('input', { type: 'text', name: 'tags', placeholder: 'tags, comma separated', 'aria-label': 'Tags' }),
      el('input', { type: 'hidden', name: 'id' }),
      el('button', { type: 'submit' }, 'Save note')) : null;
    if (form) {
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const f = new FormData(form);
        const data = { site: site(), date: f.get('date'), text: f.get('text'), tags: String(f.get('tags') || '').split(',').map((t) => t.trim()).filter(Boolean) };
        try {
          if (f.get('id')) await api(`/api/v1/notes/${f.get('id')}`, data, 'PUT');
          else await api('/api/v1/notes', data);
          render();
        } catch (x) { form.append(el('span', { class: 'error', role: 'alert' }, x.message)); }
      });
    }
    notesCard.replaceChildren(el('h2', { text: 'Notes' }), notes.length ? list : el('p', { class: 'muted', text: 'No notes in this range.' }), form || '');
  }
  function editNote(n) {
    const form = doc.getElementById('note-form');
    if (!form) return;
    form.elements.date.value = n.date;
    form.elements.text.value = n.text;
    form.elements.tags.value = (n.tags || []).join(', ');
    form.elements.id.value = n.id;
    form.elements.text.focus();
  }

  async function dashboard() {
    if (!site()) {
      main.replaceChildren(el('section', { class: 'card' }, el('h1', { text: 'No site yet' }), el('p', {}, 'Add one with ', el('code', {}, 'beacon sites add example.com'), ', then send it hits.')));
      return;
    }
    body.dataset.loaded = 'false';
    const row = el('section', { class: 'toprow', id: 'toprow' }, el('p', { class: 'muted', text: 'Loading…' }));
    const chartCard = el('section', { class: 'card', 'data-panel': 'chart' }, el('div', { class: 'slot' }));
    notesCard = el('section', { class: 'card', 'data-panel': 'notes' });
    const title = el('h1', {}, site(), ' ', el('small', {}, (RANGES.find(([v]) => v === range()) || [0, range()])[1]));
    const grid = el('div', { class: 'grid' }, PANELS.map(([t, d]) => breakdown(t, d)), quality());
    const extra = mode === 'app' ? el('div', { class: 'grid' }, realtime(), goalsAndFunnels(), revenue()) : null;
    main.replaceChildren(title, chips() || '', row, chartCard, mode === 'app' ? notesCard : '', grid, extra ? el('div', { style: 'height:1em' }) : '', extra || '');
    panel(chartCard, async (slot) => {
      const notes = await chart(slot);
      if (mode === 'app') notesPanel(notes || []);
    });
    try {
      await topRow(row);
      body.dataset.loaded = 'true';
      done();
    } catch (e) {
      if (e.status === 401 && mode === 'app') return login();
      row.replaceChildren(el('p', { class: 'error', role: 'alert', text: `Could not load the numbers: ${e.message}` }));
    }
  }

  // ---------- settings ----------
  function settings() {
    const role = me.role;
    if (role === 'viewer' || me.scope !== 'write') {
      main.replaceChildren(el('section', { class: 'card', id: 'settings-denied' }, el('h1', { text: 'Settings' }),
        el('p', { text: 'Settings need the admin or user role; you can read this agency\'s dashboards.' })));
      return;
    }
    const sites = el('section', { class: 'card', 'data-panel': 'sites' }, el('h2', { text: 'Sites' }),
      el('table', {}, el('tr', {}, el('th', {}, 'Site'), el('th', {}, 'Time zone'), el('th', {}, 'Currency')),
        me.sites.map((s) => el('tr', {}, el('td', {}, s.domain), el('td', {}, s.timezone), el('td', {}, s.currency)))));
    const hooks = el('section', { class: 'card', 'data-panel': 'hooks' }, el('h2', { text: `Webhooks of ${site()}` }), el('div', { class: 'slot' }));
    panel(hooks, async (slot) => {
      const r = await api(`/api/v1/hooks?site=${encodeURIComponent(site())}`);
      const form = el('form', { class: 'inline' },
        el('input', { type: 'url', name: 'url', required: true, placeholder: 'https://hooks.example.com/beacon', 'aria-label': 'Webhook URL' }),
        el('button', { type: 'submit' }, 'Add webhook'));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          const made = await api('/api/v1/hooks', { site: site(), url: new FormData(form).get('url') });
          slot.prepend(el('p', { role: 'status' }, 'Signing secret (shown once): ', el('code', {}, made.secret)));
        } catch (x) { form.append(el('span', { class: 'error', role: 'alert' }, x.message)); }
      });
      slot.replaceChildren(r.hooks.length ? el('table', {}, el('tr', {}, el('th', {}, 'URL'), el('th', {}, 'Events'), el('th', {}, 'State'), el('th', {}, '')),
        r.hooks.map((h) => el('tr', {}, el('td', {}, h.url), el('td', {}, h.events.join(', ')),
          el('td', {}, h.enabled ? `on${h.failure_count ? ` (${h.failure_count} failures)` : ''}` : 'disabled'),
          el('td', {}, el('button', { onclick: async () => { await api(`/api/v1/hooks/${h.id}`, undefined, 'DELETE'); render(); } }, 'Remove'))))) : el('p', { class: 'muted', text: 'No webhooks.' }), form);
    });
    const integrations = el('section', { class: 'card', 'data-panel': 'integrations' }, el('h2', { text: 'Payment integrations' }), el('div', { class: 'slot' }));
    panel(integrations, async (slot) => {
      const r = await api(`/api/v1/integrations?site=${encodeURIComponent(site())}`);
      slot.replaceChildren(r.integrations.length ? el('table', {}, r.integrations.map((i) => el('tr', {}, el('td', {}, i.provider), el('td', {}, el('code', {}, location.origin + i.path)))))
        : el('p', { class: 'muted', text: 'No payment provider yet.' }),
      el('p', { class: 'muted' }, 'Connect Stripe, Lemon Squeezy, Polar or Shopify with ', el('code', {}, 'beacon webhooks add SITE PROVIDER --secret env:VAR'), ', then point the provider at the path shown.'));
    });
    const parts = [el('h1', { text: 'Settings' }), sites, hooks, integrations];
    if (role === 'admin' || role === null) {
      const users = el('section', { class: 'card', 'data-panel': 'users' }, el('h2', { text: 'Users' }), el('div', { class: 'slot' }));
      panel(users, async (slot) => {
        const r = await api('/api/v1/users');
        slot.replaceChildren(el('table', {}, r.users.map((u) => el('tr', {}, el('td', {}, u.email), el('td', {}, u.role)))),
          el('p', { class: 'muted' }, 'Add users with ', el('code', {}, 'beacon users add'), '.'));
      });
      const tokens = el('section', { class: 'card', 'data-panel': 'tokens' }, el('h2', { text: 'API tokens' }), el('div', { class: 'slot' }));
      panel(tokens, async (slot) => {
        const r = await api('/api/v1/tokens');
        slot.replaceChildren(r.tokens.length ? el('table', {}, el('tr', {}, el('th', {}, 'Prefix'), el('th', {}, 'Scope'), el('th', {}, 'Last used'), el('th', {}, 'Requests')),
          r.tokens.map((t) => el('tr', {}, el('td', {}, el('code', {}, t.prefix)), el('td', {}, t.revoked ? 'revoked' : t.scope), el('td', {}, t.last_used ? new Date(t.last_used).toLocaleString(lang) : 'never'), el('td', {}, nf.format(t.requests))))) : el('p', { class: 'muted', text: 'No tokens.' }));
      });
      parts.push(users, tokens);
    }
    main.replaceChildren(...parts);
  }

  function render() {
    header();
    if (mode === 'app' && params().get('view') === 'settings') settings();
    else dashboard();
  }

  async function start() {
    if (mode === 'locked') return;
    if (mode === 'share') { render(); return; }
    try {
      me = await api('/api/v1/me');
    } catch (e) {
      if (e.status === 401) return login();
      main.replaceChildren(el('p', { class: 'error', role: 'alert', text: `Could not reach the server: ${e.message}` }));
      return;
    }
    if (!params().get('site') && me.sites[0]) history.replaceState(null, '', `/?site=${encodeURIComponent(me.sites[0].domain)}${location.search.replace(/^\?/, '&')}`);
    render();
  }

  window.addEventListener('popstate', render);
  start();
})();
