// msntap view: the single page served by `msntap view` and `msntap proxy --web`.
// Plain browser JavaScript, no build step, nothing loaded from elsewhere. All data comes
// from this server's /api/* and /events; everything shown is inserted as text (never as
// HTML) except the ladder SVG, which the server builds with every string XML-escaped.
'use strict';

(function () {
  const TOKEN = new URLSearchParams(location.search).get('token');
  const ROW_H = 20;
  const PAGE = 200;
  const $ = (id) => document.getElementById(id);

  function api(path, q) {
    const u = new URL(path, location.origin);
    if (TOKEN) u.searchParams.set('token', TOKEN);
    for (const [k, v] of Object.entries(q || {})) {
      if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
    }
    return u.toString();
  }

  async function getJSON(path, q) {
    const r = await fetch(api(path, q));
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }

  // Builds an element; attrs: class, text, title, dataset via data-*, anything else as attribute.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  function clock(ts) { return typeof ts === 'string' ? ts.slice(11, 26) : ''; }
  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  const state = {
    summary: null,
    chain: null,
    selected: null,
    total: 0,
    pages: new Map(),
    pending: new Set(),
    gen: 0,
    ladderSkip: 0,
    ladderInfo: null,
    lastTick: null,
  };

  // ---------- sessions ----------

  function renderSummary(s) {
    state.summary = s;
    const st = $('status');
    let text = s.events.toLocaleString() + ' events';
    if (s.evicted) text += ', ' + s.evicted.toLocaleString() + ' oldest let go (memory bound)';
    if (s.dropped && s.dropped.events) text += ', ' + s.dropped.events.toLocaleString() + ' dropped (view fell behind)';
    if (!s.redacted) text += ', secrets shown (--no-redact)';
    text += s.live ? ' · live' : (s.done ? ' · complete' : ' · reading…');
    const problems = s.problems || [];
    if (problems.length) text += ' · ' + problems.length + ' input problem' + (problems.length > 1 ? 's' : '') + ': ' + problems.join('; ');
    st.textContent = text;
    st.classList.toggle('live', !!s.live);
    st.classList.toggle('bad', problems.length > 0);
    $('title').textContent = s.title || '';

    // The list is rebuilt only when something in it changed (a live run ticks often).
    const key = JSON.stringify([s.chains, state.chain]);
    if (key === state.chainsKey) return;
    state.chainsKey = key;
    const box = $('chains');
    const frag = document.createDocumentFragment();
    for (const ch of s.chains) {
      const d = el('div', { class: 'chain' + (state.chain === ch.id ? ' sel' : ''), 'data-chain': ch.id, 'data-user': ch.user || '' },
        el('div', {}, el('span', { class: 'user', text: ch.user || 'client' }), ' ', el('span', { class: 'muted', text: 'chain ' + ch.id })));
      for (const c of ch.conns) {
        const state_ = c.open ? 'open' : (c.ending || 'closed');
        const row = el('div', { class: 'conn' + (c.open ? ' open' : ''), 'data-conn': c.id, 'data-service': c.service, title: c.via ? 'reached by ' + c.via + (c.link ? ' (joined by ' + c.link + ')' : '') : '' },
          el('span', { class: 'svc', text: c.service }),
          el('span', { text: c.version || '' }),
          el('span', { class: 'muted', text: c.server || ('conn ' + c.id) }),
          el('span', { class: 'state', text: state_ }),
          el('span', { class: 'muted', text: '↑' + bytes(c.bytes_c2s) + ' ↓' + bytes(c.bytes_s2c) }));
        if (c.errors || c.desyncs || c.gaps) {
          row.append(el('span', { class: 'bad', text: [c.errors && c.errors + ' errors', c.desyncs && c.desyncs + ' desyncs', c.gaps && c.gaps + ' gaps'].filter(Boolean).join(', ') }));
        }
        d.append(row);
      }
      frag.append(d);
    }
    if (!s.chains.length) frag.append(el('p', { class: 'muted', text: 'No connections yet.' }));
    if (s.chains_total > s.chains.length) {
      frag.append(el('p', { class: 'muted', text: (s.chains_total - s.chains.length).toLocaleString() + ' more chains not listed; filter the events by user to find one.' }));
    }
    box.replaceChildren(frag);

    const sel = $('ladder-chain');
    const keep = sel.value;
    sel.replaceChildren(...s.chains.map((ch) => el('option', { value: ch.id, text: (ch.user || 'client') + ' — chain ' + ch.id })));
    if (state.chain !== null) sel.value = String(state.chain);
    else if (keep) sel.value = keep;
  }

  async function refreshSummary() {
    try {
      renderSummary(await getJSON('/api/summary'));
    } catch (e) {
      $('status').textContent = 'cannot reach msntap: ' + e.message;
    }
  }

  function selectChain(id) {
    state.chain = id;
    state.ladderSkip = 0;
    for (const d of document.querySelectorAll('.chain')) d.classList.toggle('sel', Number(d.dataset.chain) === id);
    $('ladder-chain').value = String(id);
    $('chain-filter-label').hidden = false;
    if (document.querySelector('#filters [name=chainonly]').checked) resetList();
    if (activeTab() === 'ladder') loadLadder();
  }

  $('chains').addEventListener('click', (e) => {
    const c = e.target.closest('.chain');
    if (c) selectChain(Number(c.dataset.chain));
  });

  // ---------- tabs ----------

  function activeTab() {
    const b = document.querySelector('#tabs button.active');
    return b ? b.dataset.tab : 'events';
  }

  function showTab(name) {
    for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === name);
    for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t.id === 'tab-' + name);
    if (name === 'ladder') {
      if (state.chain === null && state.summary && state.summary.chains.length) selectChain(state.summary.chains[0].id);
      else loadLadder();
    } else if (name === 'transcript' || name === 'objects' || name === 'report') {
      loadDoc(name);
    } else if (name === 'events') {
      scheduleRender();
    }
  }

  $('tabs').addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (b) showTab(b.dataset.tab);
  });

  // ---------- event list (virtualised: only the visible rows exist in the page) ----------

  function query() {
    const f = $('filters');
    const q = {};
    for (const name of ['only', 'hide', 'service', 'dir', 'user', 'q']) q[name] = f.elements[name].value.trim();
    if (f.elements.problems.checked) q.problems = '1';
    if (f.elements.chainonly.checked && state.chain !== null) q.chain = state.chain;
    return q;
  }

  function resetList() {
    state.gen++;
    state.pages = new Map();
    state.pending = new Set();
    fetchPage(0);
  }

  async function fetchPage(p, gen) {
    const g = gen === undefined ? state.gen : gen;
    const key = g + ':' + p;
    if (state.pending.has(key)) return;
    state.pending.add(key);
    try {
      const d = await getJSON('/api/rows', Object.assign(query(), { offset: p * PAGE, limit: PAGE }));
      if (g !== state.gen) return;
      state.total = d.total;
      state.pages.set(p, d.rows);
      $('spacer').style.height = (d.total * ROW_H) + 'px';
      $('count').textContent = d.total.toLocaleString() + ' events match';
      scheduleRender();
    } catch (e) {
      $('count').textContent = 'filter: ' + e.message;
    } finally {
      state.pending.delete(key);
    }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; renderRows(); });
  }

  function rowElement(r) {
    const [seq, ts, conn, dir, service, cmd, kind, flags, text] = r;
    let cls = 'row ' + (dir || 'none');
    if (kind !== 'command') cls += ' ev';
    if (flags & 7) cls += ' flag';
    if (kind === 'desync' || kind === 'gap' || kind === 'error' || kind === 'dropped') cls += ' problem';
    if (seq === state.selected) cls += ' sel';
    const d = el('div', { class: cls, 'data-seq': seq, 'data-cmd': kind === 'command' ? cmd : kind, 'data-conn': conn },
      el('span', { class: 'ts', text: clock(ts) }),
      el('span', { class: 'cn', text: conn || '' }),
      el('span', { class: 'sv', text: service === 'unknown' ? '' : service }),
      el('span', { class: 'dr', text: dir === 'c2s' ? '>>>' : dir === 's2c' ? '<<<' : '' }),
      el('span', { class: 'cm', text: kind === 'command' ? cmd : '' }),
      el('span', { class: 'tx', text: kind === 'command' ? text.slice(cmd.length + 1) : text }));
    d.title = text;
    return d;
  }

  function renderRows() {
    const list = $('list');
    const top = list.scrollTop;
    const h = list.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 10);
    const last = Math.min(state.total, Math.ceil((top + h) / ROW_H) + 10);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const p = Math.floor(i / PAGE);
      const page = state.pages.get(p);
      if (!page) { fetchPage(p); frag.append(el('div', { class: 'row ev', text: '…' })); continue; }
      const r = page[i - p * PAGE];
      if (r) frag.append(rowElement(r));
    }
    const rows = $('rows');
    rows.style.top = (first * ROW_H) + 'px';
    rows.replaceChildren(frag);
  }

  $('list').addEventListener('scroll', scheduleRender, { passive: true });
  $('list').addEventListener('click', (e) => {
    const r = e.target.closest('.row[data-seq]');
    if (r) showDetail(Number(r.dataset.seq));
  });
  $('list').addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const rows = [...document.querySelectorAll('#rows .row[data-seq]')];
    const i = rows.findIndex((r) => Number(r.dataset.seq) === state.selected);
    const next = rows[i + (e.key === 'ArrowDown' ? 1 : -1)];
    if (next) { e.preventDefault(); showDetail(Number(next.dataset.seq)); }
  });

  let filterTimer = null;
  const filtersChanged = () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { $('list').scrollTop = 0; resetList(); }, 150);
  };
  $('filters').addEventListener('input', filtersChanged);
  $('filters').addEventListener('change', filtersChanged);
  $('filters').addEventListener('reset', () => setTimeout(() => { $('list').scrollTop = 0; resetList(); }, 0));
  $('filters').addEventListener('submit', (e) => e.preventDefault());

  // New events: refetch what is visible (and follow the end when the list was at its end).
  async function refreshList() {
    const list = $('list');
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - ROW_H * 2;
    const g = ++state.gen;
    const top = Math.floor(list.scrollTop / ROW_H);
    const old = state.pages;
    state.pages = new Map();
    const want = new Set([Math.floor(top / PAGE), Math.floor((top + 60) / PAGE)]);
    await Promise.all([...want].map((p) => fetchPage(p, g)));
    if (g !== state.gen) return;
    for (const [k, v] of old) if (!state.pages.has(k) && v.length === PAGE) state.pages.set(k, v);
    if (atEnd && state.total * ROW_H > list.clientHeight) {
      const lastPage = Math.floor(Math.max(0, state.total - 1) / PAGE);
      if (!state.pages.has(lastPage)) await fetchPage(lastPage, g);
      list.scrollTop = list.scrollHeight;
    }
    scheduleRender();
  }

  // ---------- detail ----------

  function fmt(v) {
    if (v === null || v === undefined) return '';
    if (typeof v !== 'object') return String(v);
    if (Array.isArray(v)) return v.map(fmt).join(', ');
    if ('meaning' in v && 'value' in v) return v.value + ' — ' + v.meaning;
    if ('host' in v && 'port' in v) return v.host + ':' + v.port;
    if ('flags' in v && 'value' in v) {
      let s = '0x' + Number(v.value).toString(16) + (v.flags.length ? ' (' + v.flags.join(', ') + ')' : '');
      if (v.client) s += ', Messenger ' + v.client;
      if (v.ext !== undefined) s += '; ext 0x' + Number(v.ext).toString(16) + (v.ext_flags && v.ext_flags.length ? ' (' + v.ext_flags.join(', ') + ')' : '');
      return s;
    }
    if ('lists' in v && 'value' in v) return v.value + ' (' + v.lists.join(', ') + ')';
    return Object.entries(v).map(([k, x]) => k + '=' + fmt(x)).join(', ');
  }

  function table(entries) {
    const t = el('table');
    for (const [k, v] of entries) {
      if (v === undefined || v === null || (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length && !(v instanceof Node))) continue;
      t.append(el('tr', {}, el('th', { text: k }), el('td', {}, v instanceof Node ? v : fmt(v))));
    }
    return t;
  }

  function xmlText(node, depth) {
    const pad = '  '.repeat(depth);
    const attrs = Object.entries(node.attrs || {}).map(([k, v]) => ' ' + k + '="' + v + '"').join('');
    const kids = node.children || [];
    const text = node.text ? String(node.text).trim() : '';
    if (!kids.length && !text) return pad + '<' + node.name + attrs + '/>\n';
    if (!kids.length) return pad + '<' + node.name + attrs + '>' + text + '</' + node.name + '>\n';
    let s = pad + '<' + node.name + attrs + '>\n';
    if (text) s += pad + '  ' + text + '\n';
    for (const k of kids) s += xmlText(k, depth + 1);
    if (node.children_omitted) s += pad + '  <!-- ' + node.children_omitted + ' more children not kept -->\n';
    return s + pad + '</' + node.name + '>\n';
  }

  function b64bytes(b64) {
    try {
      const s = atob(b64);
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
      return out;
    } catch (_) { return new Uint8Array(0); }
  }

  function hexDump(b, max) {
    let s = '';
    const n = Math.min(b.length, max);
    for (let i = 0; i < n; i += 16) {
      const chunk = b.slice(i, Math.min(i + 16, n));
      s += i.toString(16).padStart(4, '0') + '  ';
      for (let k = 0; k < 16; k++) s += k < chunk.length ? chunk[k].toString(16).padStart(2, '0') + ' ' : '   ';
      s += ' ' + Array.from(chunk, (c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('') + '\n';
    }
    if (b.length > max) s += '... ' + (b.length - max) + ' more bytes\n';
    return s;
  }

  // A text message as the client would show it: its font, colour and effects applied.
  function formattedBody(content) {
    const box = el('div', { class: 'im message-body', text: typeof content.body === 'string' ? content.body : '' });
    const f = content.format;
    if (f) {
      if (f.font) box.style.fontFamily = '"' + f.font.replace(/"/g, '') + '", sans-serif';
      if (f.color && /^#[0-9a-f]{6}$/i.test(f.color)) box.style.color = f.color;
      const fx = f.effects || [];
      if (fx.includes('bold')) box.style.fontWeight = 'bold';
      if (fx.includes('italic')) box.style.fontStyle = 'italic';
      const deco = [fx.includes('underline') && 'underline', fx.includes('strikethrough') && 'line-through'].filter(Boolean);
      if (deco.length) box.style.textDecoration = deco.join(' ');
      if (f.rtl) box.dir = 'rtl';
      box.dataset.format = [f.font, ...fx, f.color].filter(Boolean).join(', ');
    }
    return box;
  }

  function renderContent(c, out) {
    if (c.headers) out.append(el('h3', { text: 'MIME headers' }), table(c.headers.map(([k, v]) => [k, v])));
    if (c.format) {
      out.append(el('h3', { text: 'Message (formatting applied)' }), formattedBody(c));
      out.append(table([['font', c.format.font], ['effects', (c.format.effects || []).join(', ') || 'none'], ['color', c.format.color], ['charset', c.format.charset], ['pitch/family', c.format.pitch_family], ['right to left', c.format.rtl]]));
    } else if (typeof c.body === 'string' && c.body.trim() && !c.p2p) {
      out.append(el('h3', { text: 'Body' }), el('pre', { class: 'message-body', text: c.body }));
    }
    if (c.typing_user) out.append(table([['typing', c.typing_user]]));
    if (c.datacast) out.append(el('h3', { text: 'Datacast' }), table([['id', c.datacast.id], ['name', c.datacast.name], ['fields', c.datacast.fields]]));
    if (c.emoticons) out.append(el('h3', { text: 'Emoticons' }), table(Object.entries(c.emoticons)));
    if (c.msnftp) out.append(el('h3', { text: 'MSNFTP invitation' }), table(Object.entries(c.msnftp)));
    if (c.fields && !c.datacast) out.append(el('h3', { text: 'Fields' }), table(Object.entries(c.fields)));
    for (const key of ['mail_data', 'xml']) {
      if (c[key]) out.append(el('h3', { text: key === 'xml' ? 'XML' : 'Mail-Data' }), el('pre', { class: 'xml', text: xmlText(c[key], 0) }));
    }
    if (c.p2p) {
      const p = c.p2p;
      const plain = Object.entries(p).filter(([k, v]) => k !== 'slp' && (typeof v !== 'object' || Array.isArray(v)));
      out.append(el('h3', { text: 'P2P header' }), table(plain));
      if (p.slp) {
        const s = p.slp;
        out.append(el('h3', { text: 'MSNSLP' }), table(Object.entries(s).filter(([k, v]) => k !== 'headers' && k !== 'body' && k !== 'context')));
        if (s.headers) out.append(table(s.headers.map(([k, v]) => [k, v])));
        if (s.body) out.append(el('h3', { text: 'SLP body' }), table(Object.entries(s.body)));
        if (s.context) {
          out.append(el('h3', { text: 'Context' }), s.context.msnobj ? table(Object.entries(s.context.msnobj)) : table(Object.entries(s.context)));
        }
      }
    }
    if (c.body && typeof c.body === 'object' && c.body.base64) {
      out.append(el('h3', { text: 'Body bytes' }), el('pre', { text: hexDump(b64bytes(c.body.base64), 2048) }));
    }
  }

  function renderDetail(d) {
    const ev = d.event;
    const out = document.createDocumentFragment();
    const head = [['event', '#' + d.seq + ' ' + ev.type], ['time', ev.ts], ['connection', ev.conn + (d.chain !== null ? ' (chain ' + d.chain + ')' : '')], ['service', ev.service], ['version', ev.version], ['direction', ev.dir ? (ev.dir === 'c2s' ? '>>> client to server' : '<<< server to client') : undefined]];
    if (ev.type === 'command') {
      head.push(['command', ev.cmd + (ev.known ? '' : ' (unknown to the tables)') + (ev.unmatched_form ? ' (form not described)' : '')]);
      if (ev.trid !== undefined) head.push(['transaction id', ev.trid]);
      if (ev.error) head.push(['error', ev.error.code + (ev.error.name ? ' ' + ev.error.name : '') + (ev.error.meaning ? ' — ' + ev.error.meaning : '')]);
    }
    if (d.meaning) head.push(['meaning', d.meaning]);
    out.append(table(head));
    if (ev.type === 'command') {
      if (ev.fields && Object.keys(ev.fields).length) {
        out.append(el('h3', { text: 'Fields' }));
        const t = table([]);
        const meanings = d.field_meanings || {};
        for (const [k, v] of Object.entries(ev.fields)) {
          const td = el('td');
          if (v && typeof v === 'object' && !Array.isArray(v) && ('SHA1D' in v || 'Creator' in v || 'type_name' in v)) td.append(table(Object.entries(v)));
          else td.textContent = fmt(v);
          if (meanings[k]) td.append(el('div', { class: 'muted', text: meanings[k] }));
          t.append(el('tr', {}, el('th', { text: k }), td));
        }
        out.append(t);
      }
      const p = ev.payload;
      if (p) {
        out.append(el('h3', { text: 'Payload: ' + p.kind + ', ' + p.length + ' bytes' + (p.guess ? ' (framing guessed)' : '') }));
        if (p.problem) out.append(el('p', { class: 'bad', text: p.problem }));
        const dec = p.decoded;
        if (dec && (dec.headers || dec.content_type || dec.parts)) {
          renderContent(dec, out);
          if (dec.parts) for (const part of dec.parts) renderContent(part, out);
        } else if (dec && dec.name) {
          out.append(el('pre', { class: 'xml', text: xmlText(dec, 0) }));
        }
        if (p.text && !(dec && dec.name)) out.append(el('pre', { text: p.text }));
        if (p.base64) out.append(el('pre', { text: hexDump(b64bytes(p.base64), 2048) }));
      }
      if (ev.annotations && Object.keys(ev.annotations).length) {
        out.append(el('h3', { text: 'Annotations' }));
        for (const [k, v] of Object.entries(ev.annotations)) out.append(el('h3', { text: k }), table(Object.entries(v)));
      }
      out.append(el('h3', { text: 'Raw line' }), el('pre', { class: 'raw', text: d.line_text || ev.line }));
      if (d.line_hex) out.append(el('pre', { class: 'hex', text: d.line_hex }));
      if (ev.rewritten) out.append(el('h3', { text: 'Forwarded as (rewritten by msntap)' }), el('pre', { text: ev.rewritten }));
      if (ev.redacted) out.append(el('p', { class: 'muted', text: 'Secrets in this event were redacted.' }));
    } else {
      const rest = Object.entries(ev).filter(([k]) => !['schema', 'ts', 'conn', 'dir', 'service', 'version', 'type'].includes(k));
      out.append(table(rest));
    }
    out.append(el('details', {}, el('summary', { text: 'event JSON' }), el('pre', { text: JSON.stringify(ev, null, 2) })));
    $('detail-body').replaceChildren(out);
  }

  async function showDetail(seq) {
    state.selected = seq;
    for (const r of document.querySelectorAll('#rows .row')) r.classList.toggle('sel', Number(r.dataset.seq) === seq);
    for (const g of document.querySelectorAll('#ladder .step')) g.classList.toggle('sel', Number(g.dataset.seq) === seq);
    try {
      renderDetail(await getJSON('/api/event', { seq }));
    } catch (e) {
      $('detail-body').replaceChildren(el('p', { class: 'bad', text: 'event ' + seq + ': ' + e.message }));
    }
  }

  // ---------- ladder ----------

  const LADDER_STEPS = 300;

  async function loadLadder() {
    const id = state.chain !== null ? state.chain : Number($('ladder-chain').value);
    if (!Number.isFinite(id)) return;
    try {
      const d = await getJSON('/api/ladder', { chain: id, skip: state.ladderSkip, limit: LADDER_STEPS, hide: $('ladder-keepalive').checked ? '-' : undefined });
      state.ladderInfo = d;
      // The server builds this SVG with every piece of text XML-escaped.
      const holder = $('ladder');
      holder.innerHTML = d.svg;
      $('ladder-info').textContent = d.commands + ' commands drawn' + (d.hidden ? ', ' + d.hidden + ' keep-alives hidden' : '') + (d.skipped || d.truncated ? ' (' + d.skipped + ' steps before, ' + d.truncated + ' after)' : '');
      $('ladder-prev').disabled = !d.skipped;
      $('ladder-next').disabled = !d.truncated;
    } catch (e) {
      $('ladder').replaceChildren(el('p', { class: 'bad', text: 'ladder: ' + e.message }));
    }
  }

  $('ladder-chain').addEventListener('change', (e) => selectChain(Number(e.target.value)));
  $('ladder-keepalive').addEventListener('change', () => { state.ladderSkip = 0; loadLadder(); });
  $('ladder-prev').addEventListener('click', () => { state.ladderSkip = Math.max(0, state.ladderSkip - LADDER_STEPS); loadLadder(); });
  $('ladder-next').addEventListener('click', () => { state.ladderSkip += LADDER_STEPS; loadLadder(); });
  $('ladder').addEventListener('click', (e) => {
    const g = e.target.closest('.step[data-seq]');
    if (g) showDetail(Number(g.dataset.seq));
  });

  // ---------- transcript, objects, report ----------

  function entryText(m) {
    const d = m.detail || {};
    switch (m.kind) {
      case 'present': return m.who + ' was already here';
      case 'joined': return m.who + ' joined';
      case 'left': return m.who + ' left' + (d.reason ? ' (' + d.reason + ')' : '');
      case 'invited': return m.who + ' invited ' + (d.invitee || '');
      case 'typing': return m.who + ' is typing';
      case 'datacast': return m.who + ' sent ' + (d.name || 'a datacast') + (m.text ? ': ' + m.text : '');
      case 'invitation': return m.who + ' invitation' + (m.text ? ': ' + m.text : '') + (d.application ? ' (' + d.application + ')' : '');
      case 'emoticons': return m.who + ' custom emoticons' + (Array.isArray(m.detail) ? ': ' + m.detail.map((e) => e.shortcut || '').join(' ') : '');
      case 'p2p': return m.who + ' P2P: ' + (m.text || '');
      default: return m.who + ' ' + m.kind + (m.text ? ': ' + m.text : '');
    }
  }

  function renderTranscript(d) {
    const out = document.createDocumentFragment();
    if (d.stopped) out.append(el('p', { class: 'bad', text: 'The transcript stopped growing: its memory budget is spent.' }));
    if (!d.conversations || !d.conversations.length) out.append(el('p', { class: 'muted', text: 'No switchboard conversations.' }));
    for (const c of d.conversations || []) {
      const who = Object.entries(c.participants || {}).map(([h, n]) => (n && n !== h ? h + ' (' + n + ')' : h));
      const sec = el('section', { class: 'conversation', 'data-conn': c.conn });
      sec.append(el('h3', { text: 'Connection ' + c.conn + ' · ' + c.service + ' ' + (c.version || '') + ' · local user ' + (c.user || '?') + ' · with ' + (who.join(', ') || 'nobody') }));
      for (const m of c.entries || []) {
        if (m.kind === 'message') {
          const body = formattedBody({ body: m.text || '', format: m.format });
          body.className = 'message-body';
          sec.append(el('div', { class: 'msg' }, el('span', { class: 'when', text: clock(m.ts) }), el('span', { class: 'who', text: m.who + ': ' }), body));
        } else {
          sec.append(el('div', { class: 'sysmsg' }, el('span', { class: 'when', text: clock(m.ts) }), entryText(m)));
        }
      }
      out.append(sec);
    }
    $('transcript').replaceChildren(out);
  }

  function renderObjects(d) {
    const out = document.createDocumentFragment();
    if (!d.objects || !d.objects.length) out.append(el('p', { class: 'muted', text: 'No objects extracted.' }));
    for (const o of d.objects || []) {
      const box = el('div', { class: 'obj', 'data-kind': o.kind || '' });
      if (o.image) box.append(el('img', { src: api('/api/object', { id: o.id }), alt: o.name || 'object ' + o.id }));
      if (o.duplicate_of) box.append(el('div', { class: 'muted', text: 'same as #' + o.duplicate_of }));
      const check = o.sha1d_ok === true ? el('span', { class: 'ok sha1d', text: 'SHA1D matches' }) : o.sha1d_ok === false ? el('span', { class: 'bad sha1d', text: 'SHA1D MISMATCH' }) : el('span', { class: 'muted sha1d', text: 'SHA1D not checked' });
      box.append(el('div', {}, el('div', { text: (o.kind || 'object') + ' ' + (o.name || '') }), el('div', { class: 'muted', text: (o.size !== undefined ? o.size + ' bytes' : '') + (o.creator || o.sender ? ' from ' + (o.creator || o.sender) : '') + (o.complete ? '' : ', incomplete') + ' · sha1 ' + o.sha1 }), check, o.note ? el('div', { class: 'muted', text: o.note }) : null));
      out.append(box);
    }
    $('objects').replaceChildren(out);
  }

  function renderReport(d) {
    const out = document.createDocumentFragment();
    out.append(el('pre', { class: 'report', text: d.text || '' }));
    $('report').replaceChildren(out);
  }

  async function loadDoc(name) {
    const target = $(name);
    try {
      const d = await getJSON('/api/' + name);
      if (name === 'transcript') renderTranscript(d);
      else if (name === 'objects') renderObjects(d);
      else renderReport(d);
    } catch (e) {
      target.replaceChildren(el('p', { class: 'muted', text: name + ': ' + e.message }));
    }
  }

  $('transcript').addEventListener('click', (e) => {
    const m = e.target.closest('[data-seq]');
    if (m) showDetail(Number(m.dataset.seq));
  });

  // ---------- live ----------

  let tickTimer = null;
  function onTick(t) {
    state.lastTick = t;
    if (tickTimer) return;
    tickTimer = setTimeout(() => {
      tickTimer = null;
      refreshSummary();
      refreshList();
      if (activeTab() === 'ladder') loadLadder();
    }, 100);
  }

  function connect() {
    const es = new EventSource(api('/events'));
    es.addEventListener('tick', (e) => {
      try { onTick(JSON.parse(e.data)); } catch (_) { /* a partial line: the next tick will do */ }
    });
    // EventSource reconnects by itself; the status line says when it cannot.
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) $('status').textContent = 'disconnected from msntap'; };
  }

  refreshSummary().then(() => { resetList(); connect(); });
})();
