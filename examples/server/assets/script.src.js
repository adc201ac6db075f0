(function(w,d){var s=d.currentScript,A=function(k){return s&&s.getAttribute(k)},L=location,N=navigator,
api=A('data-api')||new URL(s.src).origin+'/api/event',site=A('data-domain')||L.hostname,q=(w.beacon&&w.beacon.q)||[];
if((/^(localhost|127\.|\[::1\])/.test(L.hostname)&&!A('data-allow-localhost'))||N.webdriver||(N.doNotTrack=='1'&&A('data-dnt')!='ignore')){w.beacon=function(){};return}
var page=L.href,t0=Date.now(),on=0,max=0;
function send(type,o,bg){o=o||{};o.site=site;o.type=type;o.url=o.url||L.href;o.referrer=d.referrer||null;o.screen=[screen.width,screen.height];o.language=N.language;
var j=JSON.stringify(o);if(bg&&N.sendBeacon)N.sendBeacon(api,new Blob([j],{type:'text/plain'}));else fetch(api,{method:'POST',body:j,keepalive:true,headers:{'Content-Type':'text/plain'}}).catch(function(){})}
function scroll(){var e=d.documentElement,h=e.scrollHeight-w.innerHeight,p=h>0?Math.round(100*(w.scrollY||e.scrollTop)/h):100;if(p>max)max=Math.min(p,100)}
function engaged(){var ms=on+(d.visibilityState=='visible'?Date.now()-t0:0);if(ms>0||max>0)send('engagement',{url:page,engagement:{time_ms:ms,scroll_depth:max}},1);on=0;t0=Date.now();max=0}
function view(){if(page!=L.href)engaged();page=L.href;scroll();send('pageview')}
var P=history.pushState;history.pushState=function(){P.apply(this,arguments);view()};w.addEventListener('popstate',view);
w.addEventListener('scroll',scroll,{passive:true});
d.addEventListener('visibilitychange',function(){if(d.visibilityState=='hidden'){on+=Date.now()-t0;engaged()}else t0=Date.now()});
d.addEventListener('click',function(e){var g=e.target.closest&&e.target.closest('[data-beacon-goal]'),a=e.target.closest&&e.target.closest('a[href]');
if(g)send('goal',{goal:g.getAttribute('data-beacon-goal')});if(!a)return;var u=new URL(a.href,L.href);
if(/\.(pdf|zip|dmg|exe|msi|docx?|xlsx?|pptx?|csv|mp[34]|gz|rar|7z|apk)$/i.test(u.pathname))send('custom',{name:'File Download',props:{url:u.href}},1);
else if(u.host!=L.host&&/^https?:/.test(u.protocol))send('custom',{name:'Outbound Link: Click',props:{url:u.href}},1)});
w.beacon=function(k,name,props){if(k=='goal')send('goal',{goal:name,props:props});else send('custom',{name:name,props:props})};
for(var i=0;i<q.length;i++)w.beacon.apply(w,q[i]);view()})(window,document);
