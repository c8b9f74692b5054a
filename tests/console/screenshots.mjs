// Saves screenshots of the console's three pages (the ones in docs/images/ and the README), from
// a running cluster, e.g. the main job's with MRL_KEEP_RUNNING=1:
//   node tests/console/screenshots.mjs --url http://127.0.0.1:PORT --collection fmnist --id 0 \
//        --out docs/images [--token T]
import puppeteer from 'puppeteer-core';
import fs from 'node:fs';

const args = {k: '10', id: '0'};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.url || !args.collection || !args.out) {
  console.error('usage: screenshots.mjs --url URL --collection C --out DIR [--id ID] [--k K] [--token T]');
  process.exit(2);
}
fs.mkdirSync(args.out, {recursive: true});
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run']});
try {
  const page = await browser.newPage();
  await page.setViewport({width: 1280, height: 760});
  await page.goto(args.url + '/ui/', {waitUntil: 'load'});
  if (args.token) await page.evaluate(t => sessionStorage.setItem('mrl-token', t), args.token);
  const shot = async (hash, ready, file) => {
    await page.goto(args.url + '/ui/' + hash, {waitUntil: 'load'});
    await page.waitForSelector(ready, {timeout: 60000});
    await new Promise(r => setTimeout(r, 2500));  // the cluster page's second read gives rates
    await page.screenshot({path: `${args.out}/${file}`, fullPage: true});
    console.log(`[screenshots] ${args.out}/${file}`);
  };
  await shot('#/cluster', '#shards', 'console_cluster.png');
  await shot(`#/collection/${args.collection}`, '#spec', 'console_collection.png');
  await shot(`#/search?collection=${args.collection}&id=${args.id}&k=${args.k}`, '.row[data-kind=adaptive]',
             'console_search.png');
} finally {
  await browser.close();
}
