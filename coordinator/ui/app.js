// The mrl web console: three pages (cluster, collections, search) over the coordinator's API.
// No framework and no build step: the DOM is built with el() (text only, never innerHTML from
// data), every figure comes from /v1/... (with the token) or /metrics, and the cluster page
// refreshes itself every 2 s.
'use strict';

const REFRESH_MS = 2000;
const state = {
  token: sessionStorage.getItem('mrl-token') || '',
  timer: null,
  rates: {},  // counter name -> {value, t}: the previous sample, for per-second rates
};

class AuthError extends Error {}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function showError(message) {
  const box = document.getElementById('error');
  box.hidden = !message;
  box.textContent = message || '';
}

async function api(path, body) {
  const opts = {method: body === undefined ? 'GET' : 'POST', headers: {}};
  if (state.token) opts.headers['Authorization'] = 'Bearer ' + state.token;
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let j = null;
  try { j = JSON.parse(text); } catch (e) { /* not JSON (/metrics) */ }
  const why = j && j.error ? j.error : text.slice(0, 300);
  if (r.status === 401 || r.status === 403) {
    throw new AuthError(`the coordinator refused the token (HTTP ${r.status}: ${why})`);
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}: ${why}`);
  return j !== null ? j : text;
}

// Prometheus text -> [{name, labels: {..}, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({name: m[1], labels, value: Number(m[4])});
  }
  return out;
}
const metric = (ms, name, labels = {}) =>
  ms.filter(m => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v));
const sum = xs => xs.reduce((a, m) => a + m.value, 0);

// Per-second rate of a counter since this page last read it (null on the first read).
function rate(key, value) {
  const now = performance.now();
  const prev = state.rates[key];
  state.rates[key] = {value, t: now};
  if (!prev || now <= prev.t || value < prev.value) return null;
  return (value - prev.value) / ((now - prev.t) / 1000);
}

function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; ++i; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
const fixed = (x, d = 1) => (x === null || x === undefined || x < 0 ? '–' : Number(x).toFixed(d));
const card = (id, value, key) => el('div', {class: 'card'}, el('div', {class: 'v', id}, value),
                                      el('div', {class: 'k'}, key));

// ---- cluster ----------------------------------------------------------------------------------

async function clusterPage(page) {
  const [map, health, moves, metricsText, meta] = await Promise.all([
    api('/v1/cluster'), api('/v1/shards/health'), api('/v1/moves'), api('/metrics'),
    api('/v1/meta').catch(() => null)]);
  const ms = parseMetrics(metricsText);
  const byShard = {};
  for (const h of health.shards) byShard[h.shard] = h;
  const vectors = sum(metric(ms, 'mrl_shard_points'));
  const qps = rate('queries', sum(metric(ms, 'mrl_coordinator_queries_total')));
  const active = moves.moves.filter(m => m.phase !== 'DONE' && m.phase !== 'ABORTED');
  const content = [
    el('div', {class: 'cards'},
       card('map-epoch', map.epoch, 'shard-map epoch'),
       card('group-count', map.groups.length, 'replica groups'),
       card('shard-count', map.shards.length, 'shards'),
       card('vector-count', vectors.toLocaleString('en-US'), 'vectors (all replicas)'),
       card('cluster-qps', qps === null ? '…' : qps.toFixed(1), 'queries/s at the coordinator'),
       card('move-count', active.length, 'moves in progress'),
       meta && meta.leader ? card('leader', meta.leader.id, 'leading coordinator') : null),
  ];
  const rows = [];
  map.groups.forEach((group, g) => {
    for (const id of group) {
      const info = map.shards.find(s => s.id === id) || {};
      const h = byShard[id] || {};
      const up = sum(metric(ms, 'mrl_shard_up', {shard: id}));
      const points = sum(metric(ms, 'mrl_shard_points', {shard: id}));
      const ram = sum(metric(ms, 'mrl_shard_memory_bytes', {shard: id}));
      const disk = sum(metric(ms, 'mrl_shard_disk_bytes', {shard: id}));
      const served = metric(ms, 'mrl_shard_requests_total', {shard: id});
      const shardQps = served.length ? rate('shard:' + id, sum(served)) : null;
      const buckets = Object.entries(map.collections).map(([name, c]) =>
        `${name}: ${c.group_of_bucket.filter(x => x === g).length} of ${c.num_buckets}`);
      const st = h.state || (up ? 'up' : 'down');
      rows.push(el('tr', {'data-shard': id},
        el('td', {}, String(g)), el('td', {}, id), el('td', {class: 'muted'}, info.address || ''),
        el('td', {class: 'state-' + st}, st + (h.reason ? ` (${h.reason})` : '')),
        el('td', {}, buckets.join(', ') || '–'),
        el('td', {class: 'num shard-points'}, up ? points.toLocaleString('en-US') : '–'),
        el('td', {class: 'num'}, up ? bytes(disk) : '–'), el('td', {class: 'num'}, up ? bytes(ram) : '–'),
        el('td', {class: 'num'}, shardQps === null ? '…' : shardQps.toFixed(1)),
        el('td', {class: 'num'}, fixed(h.p99_ms, 2))));
    }
  });
  content.push(el('h2', {}, 'Replica groups and shards'),
    el('table', {id: 'shards'},
       el('tr', {}, ['group', 'shard', 'address', 'health', 'buckets', 'vectors', 'disk', 'RAM',
                     'requests/s', 'p99 ms'].map(t => el('th', {}, t))),
       rows));
  content.push(el('h2', {}, `Moves in progress (${active.length})`));
  if (!active.length) {
    content.push(el('p', {class: 'muted', id: 'no-moves'}, 'No bucket is moving.'));
  } else {
    content.push(el('table', {id: 'moves'},
      el('tr', {}, ['move', 'collection', 'bucket', 'from → to group', 'phase', 'progress', 'points/s',
                    'ETA'].map(t => el('th', {}, t))),
      active.map(m => el('tr', {'data-move': m.id, class: 'move'},
        el('td', {}, m.id), el('td', {}, m.collection), el('td', {class: 'num'}, m.bucket),
        el('td', {}, `${m.source_group} → ${m.target_group}`),
        el('td', {class: 'phase'}, m.phase + (m.waiting_on ? ` (waiting on ${m.waiting_on})` : '')),
        el('td', {}, el('progress', {max: 100, value: m.progress.percent}),
           ` ${fixed(m.progress.percent, 0)}%`),
        el('td', {class: 'num'}, fixed(m.progress.points_per_s, 0)),
        el('td', {class: 'num'}, m.progress.eta_s === null ? '–' : `${fixed(m.progress.eta_s, 0)} s`)))));
  }
  page.replaceChildren(...content.filter(Boolean),
    el('p', {class: 'note'}, `Refreshed every ${REFRESH_MS / 1000} s at ${new Date().toLocaleTimeString()}. ` +
       'Health and p99 are the coordinator\'s view of each shard (its probes and calls); vectors, disk, ' +
       'RAM and requests are each shard\'s own figures, asked of it for this scrape.'));
}

// ---- collections ------------------------------------------------------------------------------

async function collectionsPage(page) {
  const {collections} = await api('/v1/collections');
  page.replaceChildren(el('h2', {}, 'Collections'),
    collections.length === 0 ? el('p', {class: 'muted'}, 'No collection yet.') :
    el('table', {id: 'collections'},
       el('tr', {}, ['name', 'dim', 'nesting', 'storage', 'indexes'].map(t => el('th', {}, t))),
       collections.map(c => el('tr', {},
         el('td', {}, el('a', {href: '#/collection/' + encodeURIComponent(c.name)}, c.name)),
         el('td', {class: 'num'}, c.dim), el('td', {}, c.nesting.join(', ')), el('td', {}, c.storage),
         el('td', {}, c.indexes.map(i => `${i.kind} over ${i.dims} dims`).join(', '))))));
}

async function collectionPage(page, name) {
  const [spec, map, metricsText] = await Promise.all([
    api('/v1/collections/' + encodeURIComponent(name)), api('/v1/cluster'), api('/metrics')]);
  const ms = parseMetrics(metricsText);
  // Points per group: replicas hold the same points, so a group counts once (its fullest replica).
  const perGroup = map.groups.map(group => Math.max(0, ...group.map(id =>
    sum(metric(ms, 'mrl_shard_points', {shard: id, collection: name})))));
  const total = perGroup.reduce((a, b) => a + b, 0);
  const placement = map.collections[name];
  const budgets = Object.entries(spec.budgets || {});
  page.replaceChildren(
    el('h2', {}, `Collection ${name}`),
    el('div', {class: 'cards'},
       card('collection-points', total.toLocaleString('en-US'), 'points'),
       card('collection-dim', spec.dim, 'dims'),
       card('collection-storage', spec.storage, 'storage'),
       card('collection-buckets', spec.num_buckets, 'buckets')),
    el('h2', {}, 'Spec'),
    el('table', {id: 'spec'},
       [['metric', spec.metric], ['nesting dims', spec.nesting.join(', ')],
        ['indexes', spec.indexes.map(i => `${i.kind} over ${i.dims} dims` +
                                          (i.kind === 'hnsw' ? ` (M ${i.m}, ef ${i.ef_search})` : '')).join('; ')],
        ['max payload', bytes(spec.max_payload_bytes)]].map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('h2', {}, 'Points per replica group'),
    el('table', {id: 'groups'},
       el('tr', {}, ['group', 'shards', 'buckets', 'points'].map(t => el('th', {}, t))),
       map.groups.map((group, g) => el('tr', {},
         el('td', {}, g), el('td', {}, group.join(', ')),
         el('td', {class: 'num'}, placement ? placement.group_of_bucket.filter(x => x === g).length : 0),
         el('td', {class: 'num'}, perGroup[g].toLocaleString('en-US'))))),
    el('h2', {}, 'Calibrated budgets'),
    budgets.length === 0
      ? el('p', {class: 'muted', id: 'no-budgets'}, 'Not calibrated yet (mrlctl calibrate, or POST …/calibrate).')
      : el('table', {id: 'budgets'},
          el('tr', {}, ['budget', 'plan', 'stages [dims, k]', 'recall@k', 'ms per query'].map(t => el('th', {}, t))),
          budgets.map(([b, p]) => el('tr', {'data-budget': b},
            el('td', {}, b), el('td', {}, p.plan),
            el('td', {}, p.stages.map(s => `[${s[0]}, ${s[1]}]`).join(' → ') + (p.one_trip ? ', one trip' : '')),
            el('td', {class: 'num'}, p.recall === null ? '–' : p.recall.toFixed(3)),
            el('td', {class: 'num'}, p.latency_us === null ? '–' : (p.latency_us / 1000).toFixed(2))))),
    el('p', {class: 'note'}, 'What the calibration measured on its sample of stored points: recall@k ' +
       'against the exact full-d answer, and the mean time per query inside the coordinator (queries ' +
       'sent to the shards in batches of 16, so below a single request\'s latency).'));
}

// ---- search -----------------------------------------------------------------------------------

function hitTile(hit, queryLabel) {
  const p = hit.payload || {};
  const label = p.label !== undefined ? p.label : null;
  const cls = 'hit' + (label !== null && queryLabel !== null ? (label === queryLabel ? ' same' : ' other') : '');
  const pic = p.image_png
    ? el('img', {src: 'data:image/png;base64,' + p.image_png, alt: `id ${hit.id}`, title: `id ${hit.id}, score ${hit.score.toFixed(4)}`})
    : el('div', {class: 'noimg'}, 'no image');
  return el('div', {class: cls, 'data-id': hit.id}, pic, el('div', {}, `#${hit.id}`),
            el('div', {}, label !== null ? `label ${label}` : hit.score.toFixed(3)));
}

function resultRow(kind, title, detail, hits, queryLabel) {
  return el('div', {class: 'row', 'data-kind': kind},
    el('div', {class: 'head'}, el('div', {class: 'dims'}, title), el('div', {class: 'muted'}, detail)),
    el('div', {class: 'hits'}, hits.map(h => hitTile(h, queryLabel))));
}

async function search(name, body) {
  const t0 = performance.now();
  const r = await api(`/v1/collections/${encodeURIComponent(name)}/search`, {...body, with_payload: true});
  return {r, ms: performance.now() - t0};
}

async function runSearch(out, spec, id, k) {
  out.replaceChildren(el('p', {class: 'muted'}, 'Searching…'));
  const got = await api(`/v1/collections/${encodeURIComponent(spec.name)}/points/get`, {ids: [id]});
  const q = got.points[0];
  if (!q.found) throw new Error(`no point with id ${id} in ${spec.name}`);
  const qp = q.payload || {};
  const queryLabel = qp.label !== undefined ? qp.label : null;
  const indexDims = spec.indexes.length ? spec.indexes[0].dims : spec.nesting[0];
  const rows = [];
  // The same query at every nesting dim: each a one-stage search over the first m dims (the
  // low-d index where one exists, else an exact scan of those dims).
  for (const m of spec.nesting) {
    const {r, ms} = await search(spec.name, {id, k, plan: {shortlist_dims: m, rerank_dims: m}});
    const how = m === indexDims ? `${spec.indexes[0].kind} index` : 'exact scan';
    rows.push(resultRow('dim', `${m} dims`, `${how}, ${ms.toFixed(1)} ms`, r.results[0], queryLabel));
  }
  // The paper's adaptive plan: a shortlist at the index dims, reranked at full d.
  const K = Math.max(200, 10 * k);
  const {r: a, ms: ams} = await search(spec.name, {id, k, plan: {shortlist_dims: indexDims, shortlist_k: K, rerank_dims: spec.dim}});
  const stages = el('div', {class: 'muted', id: 'adaptive-stages'},
    el('div', {}, `stage 1: ${indexDims}-d shortlist of ${K} candidates per shard group, ${a.timing_ms.shortlist.toFixed(2)} ms`),
    el('div', {}, `stage 2: rerank at ${spec.dim} dims to ${k}, ${a.timing_ms.rerank.toFixed(2)} ms`),
    el('div', {}, `${ams.toFixed(1)} ms in all, coverage ${(a.coverage * 100).toFixed(0)}%`));
  rows.push(el('div', {class: 'row', 'data-kind': 'adaptive'},
    el('div', {class: 'head'}, el('div', {class: 'dims'}, 'adaptive plan'), el('div', {class: 'muted'}, a.plan), stages),
    el('div', {class: 'hits'}, a.results[0].map(h => hitTile(h, queryLabel)))));
  out.replaceChildren(
    el('div', {class: 'row query'},
       el('div', {class: 'head'}, el('div', {class: 'dims'}, `query #${id}`),
          el('div', {class: 'muted'}, queryLabel !== null ? `label ${queryLabel}` : ''),
          el('div', {class: 'muted'}, 'A green frame: a hit with the query\'s label; red: another label.')),
       qp.image_png ? el('img', {src: 'data:image/png;base64,' + qp.image_png, alt: `query ${id}`, id: 'query-image'})
                    : el('div', {class: 'muted'}, 'this point has no image in its payload')),
    ...rows);
}

// A stored point at random: the nearest stored point to a random direction (a real id, whatever
// the collection's id scheme).
async function randomId(spec) {
  const v = Array.from({length: spec.dim}, () => Math.random() * 2 - 1);
  const indexDims = spec.indexes.length ? spec.indexes[0].dims : spec.nesting[0];
  const r = await api(`/v1/collections/${encodeURIComponent(spec.name)}/search`,
                      {vector: v, k: 20, plan: {shortlist_dims: indexDims, rerank_dims: indexDims}});
  const hits = r.results[0];
  if (!hits.length) throw new Error('the collection holds no points');
  return hits[Math.floor(Math.random() * hits.length)].id;
}

async function searchPage(page, params) {
  const {collections} = await api('/v1/collections');
  if (!collections.length) {
    page.replaceChildren(el('p', {class: 'muted'}, 'No collection to search yet.'));
    return;
  }
  const select = el('select', {id: 'search-collection'},
                    collections.map(c => el('option', {value: c.name}, c.name)));
  if (params.get('collection')) select.value = params.get('collection');
  const idInput = el('input', {id: 'search-id', type: 'number', min: 0, placeholder: 'point id', value: params.get('id') || ''});
  const kInput = el('input', {id: 'search-k', type: 'number', min: 1, max: 50, value: params.get('k') || 10, class: 'narrow'});
  const out = el('div', {id: 'search-results'});
  const spec = () => collections.find(c => c.name === select.value);
  const go = async () => {
    showError('');
    try {
      const id = Number(idInput.value);
      if (idInput.value === '' || !Number.isInteger(id) || id < 0) throw new Error('give a point id (a non-negative integer) or press Random');
      const k = Number(kInput.value);
      if (!Number.isInteger(k) || k < 1 || k > 50) throw new Error('k must be an integer in [1, 50]');
      history.replaceState(null, '', `#/search?collection=${encodeURIComponent(select.value)}&id=${id}&k=${k}`);
      await runSearch(out, spec(), id, k);
    } catch (e) { out.replaceChildren(); report(e); }
  };
  const random = async () => {
    showError('');
    try { idInput.value = await randomId(spec()); await go(); } catch (e) { report(e); }
  };
  page.replaceChildren(
    el('h2', {}, 'Search across nesting dims'),
    el('div', {class: 'controls'}, 'collection', select, 'point id', idInput, 'k', kInput,
       el('button', {class: 'primary', id: 'search-go', onclick: go}, 'Search'),
       el('button', {id: 'search-random', onclick: random}, 'Random point')),
    el('p', {class: 'note'}, 'Each row answers the same query (a stored point) with only the first m dims ' +
       'of the embedding; the last row is the adaptive plan. Uploading a new image is not offered: the ' +
       'coordinator holds no encoder (the model runs in mrl-trainer and mrl-embed), so the page searches ' +
       'with stored points only.'),
    out);
  if (params.get('id')) await go();
}

// ---- shell ------------------------------------------------------------------------------------

function report(e) {
  if (e instanceof AuthError) {
    document.getElementById('token-state').textContent = 'token refused';
    showError(e.message + '. Enter a read or admin token above.');
  } else {
    showError(e.message || String(e));
  }
}

async function render() {
  clearInterval(state.timer);
  state.timer = null;
  showError('');
  const page = document.getElementById('page');
  const [path, query] = (location.hash.slice(1) || '/cluster').split('?');
  const params = new URLSearchParams(query || '');
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', path.startsWith(a.getAttribute('href').slice(1).replace(/s$/, '')));
  }
  const once = async () => {
    try {
      if (path === '/cluster') await clusterPage(page);
      else if (path === '/collections') await collectionsPage(page);
      else if (path.startsWith('/collection/')) await collectionPage(page, decodeURIComponent(path.slice(12)));
      else if (path === '/search') await searchPage(page, params);
      else page.replaceChildren(el('p', {}, 'No such page: ' + path));
      if (!(path === '/search')) showError('');
    } catch (e) { report(e); }
  };
  await once();
  if (path === '/cluster') state.timer = setInterval(once, REFRESH_MS);
}

document.getElementById('token-form').addEventListener('submit', e => {
  e.preventDefault();
  state.token = document.getElementById('token').value.trim();
  sessionStorage.setItem('mrl-token', state.token);
  document.getElementById('token').value = '';
  document.getElementById('token-state').textContent = state.token ? 'token set' : 'no token';
  render();
});
document.getElementById('token-forget').addEventListener('click', () => {
  state.token = '';
  sessionStorage.removeItem('mrl-token');
  document.getElementById('token-state').textContent = 'no token';
  render();
});
document.getElementById('token-state').textContent = state.token ? 'token set' : 'no token';
window.addEventListener('hashchange', render);
render();
