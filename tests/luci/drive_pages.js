// Drives headless Chromium (Debian's /usr/bin/chromium) through
// luci-app-flowprobe's pages served by tests/luci/standin_server.py, for
// tests/test_luci_browser.py: one step a run, what it saw as JSON on stdout.
//
//   node drive_pages.js STEP URL ARTIFACTS_DIR [PARAMS_JSON]
//   STEP: status | settings-invalid | settings-change | settings-source |
//         status-conntrack | banner
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [step, url, artifacts, paramsText] = process.argv.slice(2);
const params = JSON.parse(paramsText || '{}');
const TIMEOUT = 40000;

async function rendered(page) {
	await page.goto(url);
	await page.waitForSelector('body[data-rendered="1"], #standin-error', { timeout: TIMEOUT });
	const error = await page.$('#standin-error');
	if (error)
		throw new Error('the view failed: ' + (await error.textContent()));
}

async function texts(page, selector) {
	return page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
}

async function banner(page) {
	return page.$$eval('#flowprobe-banner [data-state], .alert-message[data-state]', (nodes) =>
		nodes.map((n) => ({ state: n.getAttribute('data-state'), text: n.textContent.trim() })));
}

const steps = {
	async status(page) {
		await rendered(page);
		await page.waitForSelector('[data-interface]', { timeout: TIMEOUT });
		// rates and the chart need two polls
		await page.waitForFunction(() => {
			const t = document.querySelector('[data-field="throughput"]');
			return t && t.textContent.startsWith('Now:') &&
				document.querySelector('#flowprobe-chart polyline');
		}, null, { timeout: TIMEOUT });
		await page.waitForSelector('[data-flow]', { timeout: TIMEOUT });
		const seen = {
			banner: await banner(page),
			interfaces: await texts(page, '[data-interface]'),
			packetRates: await texts(page, '[data-interface] [data-field="packet-rate"]'),
			drops: await texts(page, '[data-interface] [data-field="drops"]'),
			source: await texts(page, '[data-field="source"]'),
			conntrackSections: await page.$$eval('#flowprobe-conntrack', (n) => n.length),
			fill: await texts(page, '[data-field="fill"]'),
			evicted: await texts(page, '[data-field="evicted"]'),
			collectors: await texts(page, '[data-collector]'),
			recordsSent: await texts(page, '[data-collector] [data-field="records-sent"]'),
			destinations: await texts(page, '[data-collector] [data-field="destination"]'),
			spools: await texts(page, '[data-collector] [data-field="spool"]'),
			lastTemplate: await texts(page, '[data-collector] [data-field="last-template"]'),
			throughput: await texts(page, '[data-field="throughput"]'),
			chartPoints: await page.$$eval('#flowprobe-chart polyline', (n) =>
				n.length ? n[0].getAttribute('points').split(' ').length : 0),
			flows: await texts(page, '[data-flow]'),
		};
		await page.screenshot({ path: path.join(artifacts, 'luci-status.png'), fullPage: true });
		await page.fill('#flowprobe-filter', params.filter);
		seen.filtered = await texts(page, '[data-flow]');
		await page.fill('#flowprobe-filter', 'no-such-flow-anywhere');
		seen.filteredNone = await texts(page, '[data-flow]');
		await page.fill('#flowprobe-filter', '');
		await page.click('#flowprobe-expire');
		await page.waitForSelector('[data-result="expire"]', { timeout: TIMEOUT });
		seen.expired = await texts(page, '[data-result="expire"]');
		await page.click('#flowprobe-reload');
		await page.waitForSelector('[data-result="reload"]', { timeout: TIMEOUT });
		seen.reloaded = await texts(page, '[data-result="reload"]');
		return seen;
	},

	async 'settings-invalid'(page) {
		await rendered(page);
		const field = '#cbid\\.flowprobe\\.main\\.idle_timeout';
		await page.fill(field, params.idle_timeout);
		const error = await page.$eval(field, (n) => ({
			invalid: n.classList.contains('cbi-input-invalid'),
			message: n.parentNode.querySelector('.cbi-value-error').textContent,
		}));
		await page.click('#save-apply');
		await page.waitForSelector('[data-save-error]', { timeout: TIMEOUT });
		const saveError = await texts(page, '[data-save-error]');
		await page.screenshot({ path: path.join(artifacts, 'luci-settings-invalid.png'), fullPage: true });
		return { error, saveError, applied: await page.getAttribute('body', 'data-applied') };
	},

	async 'settings-change'(page) {
		await rendered(page);
		const id = (section, option) => `#cbid\\.flowprobe\\.${section}\\.${option}`;
		await page.fill(id('main', 'idle_timeout'), params.idle_timeout);
		await page.fill(id('main', 'max_flows'), params.max_flows);
		await page.selectOption(id('main', '_networks'), params.networks);
		await page.fill('.cbi-section-create-name', params.collector.name);
		await page.click('#add-collector');
		const c = params.collector;
		await page.waitForSelector(id(c.name, 'host'));
		await page.selectOption(id(c.name, 'protocol'), c.protocol);
		await page.fill(id(c.name, 'host'), c.host);
		await page.fill(id(c.name, 'port'), c.port);
		// an element NetFlow v9 cannot carry is refused at once, in the daemon's words
		await page.selectOption(id(c.name, 'field'), [ 'octetDeltaCount', 'flowEndReason' ]);
		const fieldError = await page.$eval(id(c.name, 'field'), (n) =>
			n.parentNode.querySelector('.cbi-value-error').textContent);
		await page.selectOption(id(c.name, 'field'), c.fields);
		await page.screenshot({ path: path.join(artifacts, 'luci-settings-collector.png'), fullPage: true });
		await Promise.all([
			page.waitForEvent('load', { timeout: TIMEOUT }),   // LuCI reloads after apply
			page.click('#save-apply'),
		]);
		await page.waitForSelector('body[data-rendered="1"]', { timeout: TIMEOUT });
		const value = (section, option) => page.$eval(id(section, option), (n) =>
			n.multiple ? Array.from(n.selectedOptions).map((o) => o.value) : n.value);
		return {
			fieldError,
			notes: await banner(page),
			after: {
				idle_timeout: await value('main', 'idle_timeout'),
				max_flows: await value('main', 'max_flows'),
				networks: await value('main', '_networks'),
				host: await value(c.name, 'host'),
				protocol: await value(c.name, 'protocol'),
				fields: await value(c.name, 'field'),
			},
		};
	},

	// the metering source, a conntrack option shown for it, a collector's spool
	async 'settings-source'(page) {
		await rendered(page);
		const id = (section, option) => `#cbid\\.flowprobe\\.${section}\\.${option}`;
		const conntrackOption = id('main', params.option);
		const shown = async () => page.$$eval('[data-tab="conntrack"] .cbi-value', (rows) =>
			rows.filter((r) => r.offsetParent !== null).map((r) => r.getAttribute('data-name')));
		await page.waitForSelector(conntrackOption, { state: 'hidden', timeout: TIMEOUT });
		const shownBefore = await shown();
		const sourceBefore = await page.$eval(id('main', 'source'), (n) => n.value);
		await page.selectOption(id('main', 'source'), params.source);
		await page.waitForSelector(conntrackOption, { state: 'visible', timeout: TIMEOUT });
		const shownAfter = await shown();
		// out of range: refused at once, in the daemon's words
		await page.fill(conntrackOption, params.invalid);
		const error = await page.$eval(conntrackOption, (n) => ({
			invalid: n.classList.contains('cbi-input-invalid'),
			message: n.parentNode.querySelector('.cbi-value-error').textContent,
		}));
		await page.fill(conntrackOption, params.value);
		await page.fill(id(params.collector, 'spool_kb'), params.spool_kb);
		const spoolDescription = await texts(page,
			'.cbi-section-table-descr [data-option="spool_kb"]');
		await page.screenshot({ path: path.join(artifacts, 'luci-settings.png'), fullPage: true });
		await Promise.all([
			page.waitForEvent('load', { timeout: TIMEOUT }),   // LuCI reloads after apply
			page.click('#save-apply'),
		]);
		await page.waitForSelector('body[data-rendered="1"]', { timeout: TIMEOUT });
		await page.waitForSelector(conntrackOption, { state: 'visible', timeout: TIMEOUT });
		const value = (section, option) => page.$eval(id(section, option), (n) => n.value);
		return {
			shownBefore, sourceBefore, shownAfter, error, spoolDescription,
			after: {
				source: await value('main', 'source'),
				[params.option]: await value('main', params.option),
				spool_kb: await value(params.collector, 'spool_kb'),
			},
		};
	},

	async 'status-conntrack'(page) {
		await rendered(page);
		await page.waitForSelector('#flowprobe-conntrack', { timeout: TIMEOUT });
		const seen = {
			banner: await banner(page),
			source: await texts(page, '[data-field="source"]'),
			conntrack: Object.fromEntries(await page.$$eval('#flowprobe-conntrack [data-field]',
				(nodes) => nodes.map((n) => [ n.getAttribute('data-field'), n.textContent.trim() ]))),
			spools: await texts(page, '[data-collector] [data-field="spool"]'),
		};
		await page.screenshot({ path: path.join(artifacts, 'luci-status-conntrack.png'), fullPage: true });
		return seen;
	},

	async banner(page) {
		await rendered(page);
		await page.waitForSelector('#flowprobe-banner', { timeout: TIMEOUT });
		const seen = { banner: await banner(page),
		               buttonsDisabled: await page.$$eval('#flowprobe-expire, #flowprobe-reload',
		                                                  (n) => n.map((b) => b.disabled)) };
		if (params.screenshot)
			await page.screenshot({ path: path.join(artifacts, params.screenshot), fullPage: true });
		return seen;
	},
};

(async () => {
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		args: [ '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage' ],
	});
	const errors = [];
	try {
		const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
		page.on('pageerror', (e) => errors.push(String(e)));
		const seen = await steps[step](page);
		seen.pageErrors = errors;
		process.stdout.write(JSON.stringify(seen));
	}
	catch (e) {
		process.stdout.write(JSON.stringify({ failure: String(e.stack || e), pageErrors: errors }));
		process.exitCode = 1;
	}
	finally {
		await browser.close();
	}
})();
