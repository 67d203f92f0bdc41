// Drives headless Chromium (Debian's /usr/bin/chromium) through
// luci-app-flowprobe's pages, for tests/test_luci_browser.py (LuCI stand-in,
// tests/luci/standin_server.py) and tests/test_luci_real.py (the real LuCI
// runtime, tests/luci/real/stack.py): one step a run, what it saw as JSON on
// stdout. Both runtimes are driven the same way, through what real LuCI
// renders (widget ids widget.cbid..., class instances behind them, the
// "Save & Apply" button, GridSection's Add/Edit dialog); on the real one the
// login form is filled in first (PARAMS user, password).
//
//   node drive_pages.js STEP URL ARTIFACTS_DIR [PARAMS_JSON]
//   STEP: status | settings-invalid | settings-change | settings-source |
//         save-unchanged | status-conntrack | banner | page | history
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [step, url, artifacts, paramsText] = process.argv.slice(2);
const params = JSON.parse(paramsText || '{}');
const TIMEOUT = 40000;
const shot = (name) => path.join(artifacts, (params.prefix || '') + name);
// the settings' tabs, to show an option before typing into it
const TABS = {
	table: [ 'max_flows', 'max_fragments', 'overflow', 'idle_timeout', 'active_timeout',
	         'unanswered_timeout', 'tcp_end_grace', 'fragment_timeout', 'biflow' ],
	capture: [ 'promisc', 'filter', 'snaplen', 'buffer_kb' ],
	conntrack: [ 'conntrack_max_connections', 'conntrack_dump_interval',
	             'conntrack_vanish_grace', 'conntrack_buffer_kb' ],
};

const cbid = (section, option) => `cbid.flowprobe.${section}.${option}`;
const control = (section, option) =>
	`[id="widget.${cbid(section, option)}"], [data-widget-id="widget.${cbid(section, option)}"]`;

async function login(page) {
	if (!(await page.$('input[name="luci_username"]')))
		return;
	await page.fill('input[name="luci_username"]', params.user);
	await page.fill('input[name="luci_password"]', params.password);
	await Promise.all([
		page.waitForNavigation({ timeout: TIMEOUT }),
		page.press('input[name="luci_password"]', 'Enter'),
	]);
}

// the view is drawn (no "Loading view…"), or LuCI reported its error
async function viewDone(page) {
	await page.waitForFunction(() => {
		const view = document.getElementById('view');
		return (view && view.children.length && !view.querySelector(':scope > .spinning')) ||
			document.querySelector('.alert-message.danger');
	}, null, { timeout: TIMEOUT });
	const error = await page.$('.alert-message.danger');
	if (error)
		throw new Error('the view failed: ' + (await error.textContent()));
}

// what the page says before the login (its 403, an anonymous probe) is not the app's
let loggedIn = () => {};

async function rendered(page, target) {
	await page.goto(target || url);
	await login(page);
	loggedIn();
	await viewDone(page);
}

async function texts(page, selector) {
	return page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
}

// the collectors grid: [ section name, the row's text ]
async function grid(page) {
	return page.$$eval('#cbi-flowprobe-collector tr[data-sid]', (rows) =>
		rows.map((r) => [ r.getAttribute('data-sid'), r.textContent.trim() ]));
}

async function banner(page) {
	return page.$$eval('#flowprobe-banner [data-state], .alert-message[data-state]', (nodes) =>
		nodes.map((n) => ({ state: n.getAttribute('data-state'), text: n.textContent.trim() })));
}

async function showTab(page, option) {
	const tab = Object.keys(TABS).find((t) => TABS[t].includes(option)) ||
		(option.startsWith('conntrack') ? 'conntrack' : 'general');
	const link = await page.$(`.cbi-tabmenu li[data-tab="${tab}"] a`);
	if (link)
		await link.click();
}

// a text field: typed, then the events LuCI validates on (keyup, blur)
async function fill(page, section, option, value) {
	if (section == 'main')
		await showTab(page, option);
	const selector = control(section, option);
	await page.fill(selector, value);
	await page.dispatchEvent(selector, 'keyup');
	await page.dispatchEvent(selector, 'blur');
}

async function select(page, section, option, value) {
	if (section == 'main')
		await showTab(page, option);
	const selector = control(section, option);
	await page.selectOption(selector, value);
	await page.dispatchEvent(selector, 'blur');
}

// dropdowns and lists (NetworkSelect, MultiValue, DynamicList): through the
// widget's own setValue, then what a user's change fires
async function setWidget(page, section, option, value) {
	if (section == 'main')
		await showTab(page, option);
	await page.evaluate(([id, v]) => {
		const node = document.getElementById(id);
		const widget = L.dom.findClassInstance(node);
		widget.setValue(v);
		if (widget.triggerValidation)
			widget.triggerValidation();
		node.dispatchEvent(new CustomEvent('widget-change', { bubbles: true }));
	}, [ cbid(section, option), value ]);
}

async function widgetValue(page, section, option) {
	return page.evaluate((id) => {
		const node = document.getElementById(id);
		return node ? L.dom.findClassInstance(node).getValue() : null;
	}, cbid(section, option));
}

async function validity(page, section, option) {
	return page.evaluate((id) => {
		const widget = L.dom.findClassInstance(document.getElementById(id));
		return { invalid: !widget.isValid(), message: widget.getValidationError() };
	}, cbid(section, option));
}

async function saveApply(page) {
	await Promise.all([
		page.waitForEvent('load', { timeout: TIMEOUT }),   // LuCI reloads the page after apply
		page.click('.cbi-page-actions .cbi-button-apply', { position: { x: 12, y: 8 } }),
	]);
	await viewDone(page);
}

async function modalSave(page) {
	await page.click('#modal_overlay .cbi-button-positive');
	await page.waitForFunction(() => !document.body.classList.contains('modal-overlay-active'),
		null, { timeout: TIMEOUT });
}

// what the chart draws: each line's points read back through its axis
async function chartValues(page) {
	return page.$eval('#flowprobe-chart', (chart) => {
		const [ , top, , plotH ] = chart.getAttribute('data-plot').split(' ').map(Number);
		const scale = Number(chart.getAttribute('data-scale-bits'));
		const lines = {};
		chart.querySelectorAll('[data-line]').forEach((line) => {
			const name = line.getAttribute('data-line');
			const points = line.tagName == 'circle'
				? [ [ 0, Number(line.getAttribute('cy')) ] ]
				: line.getAttribute('points').split(' ').map((p) => p.split(',').map(Number));
			lines[name] = (lines[name] || []).concat(points.map((p) => (top + plotH - p[1]) / plotH * scale / 8));
		});
		return { scaleBits: scale, lines,
		         yLabels: Array.from(chart.querySelectorAll('[data-axis="y"]')).map((n) => n.textContent),
		         xLabels: Array.from(chart.querySelectorAll('[data-axis="x"]')).map((n) => n.textContent) };
	});
}

const steps = {
	// a page loaded and shot: nothing else
	async page(page) {
		await rendered(page);
		if (params.wait)
			await page.waitForSelector(params.wait, { timeout: TIMEOUT });
		if (params.screenshot)
			await page.screenshot({ path: shot(params.screenshot), fullPage: true });
		return { banner: await banner(page), title: await page.title() };
	},

	async status(page) {
		await rendered(page);
		await page.waitForSelector('[data-interface]', { timeout: TIMEOUT });
		// rates and the chart need two polls at least 2 s apart
		await page.waitForFunction((n) => {
			const t = document.querySelector('[data-field="throughput"]');
			return t && t.textContent.startsWith('Now:') &&
				document.querySelectorAll('#flowprobe-chart polyline').length >= n;
		}, params.lines || 1, { timeout: TIMEOUT });
		if (params.settle)   // more samples for the rate check
			await page.waitForTimeout(params.settle * 1000);
		await page.waitForSelector('[data-flow]', { timeout: TIMEOUT });
		const seen = {
			banner: await banner(page),
			interfaces: await texts(page, '[data-interface]'),
			packetRates: await texts(page, '[data-interface] [data-field="packet-rate"]'),
			byteRates: await texts(page, '[data-interface] [data-field="byte-rate"]'),
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
			legend: await texts(page, '[data-legend]'),
			chartPoints: await page.$$eval('#flowprobe-chart polyline', (n) =>
				n.length ? n[0].getAttribute('points').split(' ').length : 0),
			chart: await chartValues(page),
			flows: await texts(page, '[data-flow]'),
			protocols: await texts(page, '[data-flow] [data-field="protocol"]'),
			devices: await texts(page, '[data-flow] [data-field="device"]'),
		};
		await page.screenshot({ path: shot('luci-status.png'), fullPage: true });
		// the 1 hour range, then back
		await page.click('#flowprobe-throughput [data-range="3600"]');
		seen.hourLabels = (await chartValues(page)).xLabels;
		await page.click('#flowprobe-throughput [data-range="300"]');
		// sorting: by packets, ascending then descending
		await page.click('th[data-sort="packets"]');
		const packets = async () => page.$$eval('[data-flow]', (rows) =>
			rows.map((r) => Number(r.children[4].textContent.replace(/\D/g, ''))));
		seen.sortedPackets = [ await packets() ];
		await page.click('th[data-sort="packets"]');
		seen.sortedPackets.push(await packets());
		await page.fill('#flowprobe-filter', params.filter);
		seen.filtered = await texts(page, '[data-flow]');
		await page.fill('#flowprobe-filter', 'no-such-flow-anywhere');
		seen.filteredNone = await texts(page, '[data-flow]');
		seen.filteredEmpty = await texts(page, '[data-empty="flows"]');
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
		await fill(page, 'main', 'idle_timeout', params.idle_timeout);
		const error = await validity(page, 'main', 'idle_timeout');
		let loads = 0;
		page.on('load', () => loads++);
		await page.click('.cbi-page-actions .cbi-button-apply', { position: { x: 12, y: 8 } });
		await page.waitForFunction(() => document.body.classList.contains('modal-overlay-active') &&
			/Save error/.test(document.querySelector('#modal_overlay .modal').textContent),
			null, { timeout: TIMEOUT });
		const saveError = await texts(page, '#modal_overlay .modal p em');
		await page.screenshot({ path: shot('luci-settings-invalid.png'), fullPage: true });
		await page.waitForTimeout(1500);
		return { error, saveError, applied: loads > 0 };
	},

	async 'settings-change'(page) {
		await rendered(page);
		const before = { networks: await widgetValue(page, 'main', '_networks'),
		                 devices: await widgetValue(page, 'main', '_devices') };
		const c = params.collector;
		await page.fill('#cbi-flowprobe-collector .cbi-section-create-name', c.name);
		// LuCI enables Add on a key press in a valid name
		await page.dispatchEvent('#cbi-flowprobe-collector .cbi-section-create-name', 'keyup');
		await page.click('#cbi-flowprobe-collector .cbi-section-create .cbi-button-add');
		await page.waitForSelector('#modal_overlay ' + control(c.name, 'host').split(', ')[0],
			{ timeout: TIMEOUT });
		await select(page, c.name, 'protocol', c.protocol);
		await fill(page, c.name, 'host', c.host);
		await fill(page, c.name, 'port', c.port);
		// an element NetFlow v9 cannot carry is refused at once, in the daemon's words
		await setWidget(page, c.name, 'field', [ 'octetDeltaCount', 'flowEndReason' ]);
		const fieldError = (await validity(page, c.name, 'field')).message;
		await setWidget(page, c.name, 'field', c.fields);
		await page.screenshot({ path: shot('luci-settings-collector-dialog.png'), fullPage: true });
		await modalSave(page);
		const rows = await grid(page);
		// after the dialog: its Save renders the whole form again from UCI, as
		// LuCI does, so what was typed elsewhere before it would be lost
		await fill(page, 'main', 'idle_timeout', params.idle_timeout);
		await fill(page, 'main', 'max_flows', params.max_flows);
		if (params.networks)
			await setWidget(page, 'main', '_networks', params.networks);
		if (params.devices)
			await setWidget(page, 'main', '_devices', params.devices);
		await page.screenshot({ path: shot('luci-settings-collector.png'), fullPage: true });
		await saveApply(page);
		return {
			before, fieldError, grid: rows,
			notes: await banner(page),
			after: {
				idle_timeout: await widgetValue(page, 'main', 'idle_timeout'),
				max_flows: await widgetValue(page, 'main', 'max_flows'),
				networks: await widgetValue(page, 'main', '_networks'),
				devices: await widgetValue(page, 'main', '_devices'),
			},
			gridAfter: await grid(page),
		};
	},

	// the metering source, a conntrack option shown for it, a collector's spool
	async 'settings-source'(page) {
		await rendered(page);
		// the collector's dialog first: its Save renders the form again from UCI
		await page.click(`#cbi-flowprobe-collector tr[data-sid="${params.collector}"] .cbi-button-edit`);
		await page.waitForSelector('#modal_overlay ' + control(params.collector, 'spool_kb').split(', ')[0],
			{ timeout: TIMEOUT });
		const spoolDescription = await texts(page,
			'#modal_overlay .cbi-value[data-name="spool_kb"] .cbi-value-description');
		await fill(page, params.collector, 'spool_kb', params.spool_kb);
		await page.screenshot({ path: shot('luci-settings-edit-dialog.png'), fullPage: true });
		await modalSave(page);
		const shown = async () => page.$$eval('[data-tab="conntrack"] .cbi-value[data-name]', (rows) =>
			rows.filter((r) => !r.classList.contains('hidden')).map((r) => r.getAttribute('data-name')));
		const shownBefore = await shown();
		const sourceBefore = await widgetValue(page, 'main', 'source');
		await select(page, 'main', 'source', params.source);
		await showTab(page, params.option);
		await page.waitForSelector(control('main', params.option), { state: 'visible', timeout: TIMEOUT });
		const shownAfter = await shown();
		// out of range: refused at once, in the daemon's words
		await fill(page, 'main', params.option, params.invalid);
		const error = await validity(page, 'main', params.option);
		await fill(page, 'main', params.option, params.value);
		await page.screenshot({ path: shot('luci-settings.png'), fullPage: true });
		await saveApply(page);
		await showTab(page, params.option);
		return {
			shownBefore, sourceBefore, shownAfter, error, spoolDescription,
			after: {
				source: await widgetValue(page, 'main', 'source'),
				[params.option]: await widgetValue(page, 'main', params.option),
			},
			grid: await grid(page),
		};
	},

	// Save & Apply with nothing changed: nothing to apply, the page stays
	async 'save-unchanged'(page) {
		await rendered(page);
		let loads = 0;
		page.on('load', () => loads++);
		await page.click('.cbi-page-actions .cbi-button-apply', { position: { x: 12, y: 8 } });
		await page.waitForFunction(() => /There are no changes to apply/.test(document.body.textContent),
			null, { timeout: TIMEOUT });
		await page.waitForTimeout(1000);
		return { applied: loads > 0 };
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
		await page.screenshot({ path: shot('luci-status-conntrack.png'), fullPage: true });
		return seen;
	},

	// the History page: chart, talkers, a drill-down, the chart by top hosts
	async history(page) {
		await rendered(page);
		await page.waitForSelector('[data-talker]', { timeout: TIMEOUT });
		const seen = {
			banner: await banner(page),
			talkers: await page.$$eval('[data-talker]', (n) => n.map((e) => e.getAttribute('data-talker'))),
			ports: await page.$$eval('[data-port]', (n) => n.map((e) => e.getAttribute('data-port'))),
			legend: await page.$$eval('[data-legend]', (n) => n.map((e) => e.getAttribute('data-legend'))),
			bars: await page.$$eval('#flowprobe-history-chart rect:not([data-anomaly])', (n) => n.length),
			anomalies: await page.$$eval('[data-anomaly]', (n) => n.map((e) => e.getAttribute('data-anomaly'))),
			histograms: await page.$$eval('[data-histogram]', (n) => n.map((e) => [
				e.getAttribute('data-histogram'), e.querySelectorAll('rect').length ])),
		};
		await page.click('[data-talker] a');
		await page.waitForSelector('[data-record]', { timeout: TIMEOUT });
		seen.records = await texts(page, '[data-record]');
		seen.drillTitle = await texts(page, '#flowprobe-history-records h3');
		await page.screenshot({ path: shot('luci-history.png'), fullPage: true });
		await page.selectOption('#flowprobe-history-by', 'host');
		await page.waitForFunction((first) => {
			const legend = document.querySelector('[data-legend]');
			return legend && legend.getAttribute('data-legend') == first;
		}, seen.talkers[0], { timeout: TIMEOUT });
		seen.hostLegend = await page.$$eval('[data-legend]', (n) => n.map((e) => e.getAttribute('data-legend')));
		await page.screenshot({ path: shot('luci-history-hosts.png'), fullPage: true });
		return seen;
	},

	async banner(page) {
		await rendered(page);
		await page.waitForSelector('#flowprobe-banner', { state: 'attached', timeout: TIMEOUT });
		const seen = { banner: await banner(page),
		               empty: await page.$$eval('[data-empty]', (n) => n.map((e) => e.getAttribute('data-empty'))),
		               buttonsDisabled: await page.$$eval('#flowprobe-expire, #flowprobe-reload',
		                                                  (n) => n.map((b) => b.disabled)) };
		if (params.screenshot)
			await page.screenshot({ path: shot(params.screenshot), fullPage: true });
		return seen;
	},
};

(async () => {
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		args: [ '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage' ],
	});
	const errors = [], consoleErrors = [], denied = [];
	loggedIn = () => { consoleErrors.length = 0; denied.length = 0; };
	try {
		const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
		page.on('pageerror', (e) => errors.push(String(e)));
		page.on('console', (m) => { if (m.type() == 'error') consoleErrors.push(m.text()) });
		page.on('response', (r) => { if (r.status() >= 400) consoleErrors.push(`HTTP ${r.status()} ${r.url()}`) });
		// rpcd's answer to a call the session's ACL does not grant
		page.on('response', async (r) => {
			if (!r.url().includes('/ubus'))
				return;
			try {
				const body = await r.json(), calls = [].concat(body);
				const request = [].concat(JSON.parse(r.request().postData() || '[]'));
				calls.forEach((reply, i) => {
					if (reply && reply.error && /Access denied/.test(reply.error.message)) {
						const p = (request[i] || {}).params || [];
						denied.push(`${p[1]}.${p[2]}`);
					}
				});
			}
			catch (e) { /* not JSON */ }
		});
		const seen = await steps[step](page);
		seen.pageErrors = errors;
		seen.consoleErrors = consoleErrors;
		seen.denied = denied;
		process.stdout.write(JSON.stringify(seen));
	}
	catch (e) {
		process.stdout.write(JSON.stringify({ failure: String(e.stack || e), pageErrors: errors,
		                                      consoleErrors, denied }));
		process.exitCode = 1;
	}
	finally {
		await browser.close();
	}
})();
