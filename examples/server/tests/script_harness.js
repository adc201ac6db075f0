// Runs the tracking script in Node against a mocked browser and prints, one JSON line
// each, every request it makes: {"scenario", "via", "url", "body"}.
const fs = require('fs'), vm = require('vm');
const code = fs.readFileSync(process.argv[2], 'utf8');

async function scenario(name, opts, actions) {
  const posts = [], listeners = { win: {}, doc: {} };
  const loc = new URL(opts.url || 'https://example.com/');
  const location = { get href() { return loc.href; }, get hostname() { return loc.hostname; }, get host() { return loc.host; } };
  const doc = {
    currentScript: { src: 'https://stats.example.net/script.js', getAttribute: (k) => (opts.attrs || {})[k] ?? null },
    referrer: opts.referrer || '', visibilityState: 'visible',
    documentElement: { scrollHeight: 2000, scrollTop: 0 },
    addEventListener: (t, f) => { listeners.doc[t] = f; },
  };
  const win = { addEventListener: (t, f) => { listeners.win[t] = f; }, innerHeight: 1000, scrollY: 0 };
  if (opts.queued) { win.beacon = Object.assign(function () {}, { q: opts.queued }); }
  const navigator = { language: 'en-US', doNotTrack: opts.dnt || null, webdriver: false,
    sendBeacon: (u, b) => { posts.push({ via: 'beacon', url: u, blob: b }); return true; } };
  const history = { pushState: (s, t, u) => { loc.href = new URL(u, loc.href).href; } };
  const ctx = { window: win, document: doc, location, navigator, history, screen: { width: 1920, height: 1080 },
    URL, Blob, JSON, Math, Date,
    fetch: (u, o) => { posts.push({ via: 'fetch', url: u, text: o.body, headers: o.headers }); return Promise.resolve(); } };
  vm.createContext(ctx);
  vm.runInContext(code, ctx);
  const el = (closest) => ({ target: { closest } });
  const api = {
    win, doc, listeners, history,
    beacon: (...a) => win.beacon(...a),
    click: (el_) => listeners.doc.click(el_),
    anchor: (href) => el((sel) => sel.startsWith('a') ? { href } : null),
    goalEl: (goal) => el((sel) => sel.startsWith('[data-beacon-goal]') ? { getAttribute: () => goal } : null),
  };
  await actions(api);
  for (const p of posts) {
    const body = p.blob ? await p.blob.text() : p.text;
    console.log(JSON.stringify({ scenario: name, via: p.via, url: p.url, body: JSON.parse(body) }));
  }
}

(async () => {
  await scenario('basic', { url: 'https://example.com/', referrer: 'https://www.google.com/' }, async (b) => {
    b.win.scrollY = 1000; b.listeners.win.scroll();
    b.history.pushState({}, '', '/pricing');
    b.click(b.anchor('https://other.org/x'));
    b.click(b.anchor('/files/report.pdf'));
    b.click(b.goalEl('signup'));
    b.beacon('goal', 'purchase-intent', { plan: 'pro' });
    b.beacon('event', 'video', { id: '7' });
    b.doc.visibilityState = 'hidden'; b.listeners.doc.visibilitychange();
  });
  await scenario('queued', { url: 'https://example.com/a', queued: [['goal', 'early']] }, async () => {});
  await scenario('localhost', { url: 'http://localhost:3000/' }, async (b) => { b.beacon('goal', 'x'); });
  await scenario('dnt', { url: 'https://example.com/', dnt: '1' }, async (b) => { b.beacon('goal', 'x'); });
  await scenario('dnt-ignored', { url: 'https://example.com/', dnt: '1', attrs: { 'data-dnt': 'ignore', 'data-domain': 'shop.example' } }, async () => {});
})();
