// Drives Debian's chromium (headless, through puppeteer-core) over the web console of a running
// cluster and checks what the pages show. Run by tests/console_e2e_test.cc, which starts the
// cluster, loads Fashion-MNIST points with their images and starts a throttled bucket move.
//
//   node console_check.mjs --url URL --token T --collection C --shards N --vectors N
//        --id ID --k K --nesting 8,16,32,64 --shots DIR [--move-bucket B --move-target G]
//        [--insecure]
// --token must be the admin token when a move is asked for (the script starts it).
//
// Prints one line per check ("[console] ok: ...") and exits 1 at the first failed one.
import puppeteer from 'puppeteer-core';
import fs from 'node:fs';

const args = {};
for (let i = 2; i < process.argv.length; ++i) {
  const a = process.argv[i];
  if (!a.startsWith('--')) throw new Error('unexpected argument ' + a);
  const next = process.argv[i + 1];
  if (next === undefined || next.startsWith('--')) args[a.slice(2)] = true;
  else { args[a.slice(2)] = next; ++i; }
}
for (const need of ['url', 'token', 'collection', 'shards', 'vectors', 'id', 'k', 'nesting', 'shots']) {
  if (!(need in args)) { console.error(`[console] missing --${need}`); process.exit(2); }
}
const k = Number(args.k);
const nesting = String(args.nesting).split(',').map(Number);
fs.mkdirSync(args.shots, {recursive: true});

function fail(message) {
  console.error('[console] FAILED: ' + message);
  process.exitCode = 1;
  throw new Error(message);
}
const ok = message => console.log('[console] ok: ' + message);

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  acceptInsecureCerts: Boolean(args.insecure),
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
const pageErrors = [];
let allowRefusals = true;  // the wrong-token step makes the browser log its 401s
try {
  const page = await browser.newPage();
  await page.setViewport({width: 1400, height: 900});
  page.on('pageerror', e => pageErrors.push('page error: ' + e.message));
  page.on('console', m => {
    if (m.type() !== 'error') return;
    if (allowRefusals && /status of 40[13]/.test(m.text())) return;
    pageErrors.push('console error: ' + m.text());
  });
  const text = async sel => page.$eval(sel, e => e.innerText.replace(/\s+/g, ' ').trim());
  const waitText = async (sel, want, what, timeout = 20000) => {
    try {
      await page.waitForFunction((s, w) => {
        const e = document.querySelector(s);
        return e && e.textContent.replace(/,/g, '').trim() === w;
      }, {timeout}, sel, String(want));
    } catch (e) {
      const seen = await page.$(sel) ? await text(sel) : '(absent)';
      fail(`${what}: expected ${want}, the page shows ${seen}; error box: ` +
           (await page.$eval('#error', e => e.hidden ? '(hidden)' : e.textContent)));
    }
  };
  const useToken = async token => {
    await page.$eval('#token', (e, t) => { e.value = t; }, token);
    await page.click('#token-use');
  };

  // 1. No token, then a wrong one: the API refuses, and the page says so.
  await page.goto(args.url + '/ui/#/cluster', {waitUntil: 'load'});
  await page.evaluate(() => sessionStorage.clear());
  await page.reload({waitUntil: 'load'});
  await page.waitForFunction(() => !document.querySelector('#error').hidden, {timeout: 20000})
    .catch(() => fail('without a token the page shows no refusal'));
  if (!/refused the token/.test(await text('#error'))) fail('no-token message: ' + await text('#error'));
  await useToken('wrong-token-' + Date.now());
  await page.waitForFunction(() => /wrong token/.test(document.querySelector('#error').textContent), {timeout: 20000})
    .catch(async () => fail('a wrong token was not refused: ' + await text('#error')));
  if (await page.$('#shard-count')) fail('the cluster page rendered with a wrong token');
  ok('no token and a wrong token are refused: ' + await text('#error'));

  // 2. The right token: the cluster page.
  await useToken(args.token);
  await waitText('#shard-count', args.shards, 'shard count');
  allowRefusals = false;
  await waitText('#vector-count', args.vectors, 'vector count');
  const shardRows = await page.$$eval('#shards tr[data-shard]', rows => rows.length);
  if (shardRows !== Number(args.shards)) fail(`${shardRows} shard rows for ${args.shards} shards`);
  const stored = await page.$$eval('#shards td.shard-points', tds => tds.map(t => Number(t.textContent.replace(/,/g, ''))));
  if (stored.reduce((a, b) => a + b, 0) !== Number(args.vectors)) fail('per-shard vectors ' + stored + ' do not add up');
  if (await page.evaluate(() => sessionStorage.getItem('mrl-token')) !== args.token) fail('the token is not in session storage');
  ok(`cluster page: ${args.shards} shards, ${args.vectors} vectors (${stored.join(' + ')}), map epoch ${await text('#map-epoch')}`);
  await page.screenshot({path: `${args.shots}/cluster.png`, fullPage: true});

  if (args['move-bucket'] !== undefined) {
    // Start a bucket move (the cluster's copy throttle keeps it running for a while), then
    // find it on the page in progress: its row, phase and progress bar (the page refreshes).
    const r = await fetch(args.url + '/v1/moves', {method: 'POST', headers: {
      'Authorization': 'Bearer ' + args.token, 'Content-Type': 'application/json'},
      body: JSON.stringify({collection: args.collection, bucket: Number(args['move-bucket']),
                            target_group: Number(args['move-target'])})});
    if (!r.ok) fail('POST /v1/moves: HTTP ' + r.status + ' ' + await r.text());
    await page.waitForSelector('#moves tr.move', {timeout: 60000})
      .catch(() => fail('no move shown in progress within 60 s'));
    const move = await page.$eval('#moves tr.move', r => ({
      id: r.dataset.move, phase: r.querySelector('.phase').textContent,
      bar: r.querySelector('progress') !== null}));
    if (!move.bar) fail('the move row has no progress bar');
    if (Number(await text('#move-count')) < 1) fail('the moves card shows none');
    ok(`a move in progress: ${move.id} in phase ${move.phase}`);
    await page.screenshot({path: `${args.shots}/cluster_move.png`, fullPage: true});
  }

  // 3. The collection page: counts, spec, calibrated budgets with recall and latency.
  await page.goto(`${args.url}/ui/#/collection/${args.collection}`, {waitUntil: 'load'});
  await waitText('#collection-dim', nesting[nesting.length - 1], 'collection dims');
  await page.waitForSelector('#budgets tr[data-budget]', {timeout: 20000})
    .catch(() => fail('no calibrated budget shown'));
  const budgets = await page.$$eval('#budgets tr[data-budget]', rows => rows.map(r =>
    [...r.querySelectorAll('td')].map(td => td.textContent)));
  for (const b of budgets) if (!(Number(b[3]) > 0 && Number(b[4]) > 0)) fail('budget without recall/latency: ' + b);
  ok('collection page: budgets ' + budgets.map(b => `${b[0]} recall ${b[3]} at ${b[4]} ms`).join('; '));
  await page.screenshot({path: `${args.shots}/collection.png`, fullPage: true});

  // 4. The search page: k images at every nesting dim, and the adaptive plan's stages.
  await page.goto(`${args.url}/ui/#/search?collection=${args.collection}&id=${args.id}&k=${k}`, {waitUntil: 'load'});
  await page.waitForSelector('.row[data-kind=adaptive]', {timeout: 30000})
    .catch(async () => fail('the search never finished: ' + await text('#error')));
  const rows = await page.$$eval('.row[data-kind]', rs => rs.map(r => ({
    kind: r.dataset.kind, title: r.querySelector('.dims').textContent,
    images: [...r.querySelectorAll('.hit img')].filter(i => i.src.startsWith('data:image/png;base64,') &&
                                                            i.complete && i.naturalWidth > 0).length})));
  const dimRows = rows.filter(r => r.kind === 'dim');
  if (dimRows.length !== nesting.length) fail(`${dimRows.length} dim rows for nesting ${nesting}`);
  for (const [i, r] of dimRows.entries()) {
    if (r.title !== `${nesting[i]} dims`) fail(`row ${i} is "${r.title}"`);
    if (r.images !== k) fail(`${r.title}: ${r.images} decoded images, not ${k}`);
  }
  const adaptive = rows.find(r => r.kind === 'adaptive');
  if (adaptive.images !== k) fail(`adaptive plan: ${adaptive.images} images, not ${k}`);
  const stages = await text('#adaptive-stages');
  if (!/stage 1: .*shortlist/.test(stages) || !/stage 2: rerank/.test(stages)) fail('adaptive stages: ' + stages);
  if (!(await page.$('#query-image'))) fail('the query has no image');
  ok(`search page: ${k} images at each of ${nesting.join(', ')} dims and the adaptive plan (${stages.replace(/\s+/g, ' ')})`);
  await page.screenshot({path: `${args.shots}/search.png`, fullPage: true});

  if (pageErrors.length) fail('the browser reported: ' + pageErrors.join(' | '));
  ok('no script error, no CSP violation');
} catch (e) {
  if (!process.exitCode) { console.error('[console] FAILED: ' + (e.stack || e)); process.exitCode = 1; }
} finally {
  await browser.close();
}
