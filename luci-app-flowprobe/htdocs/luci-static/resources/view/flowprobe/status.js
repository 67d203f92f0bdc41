'use strict';
'require view';
'require rpc';
'require uci';
'require ui';
'require poll';
'require flowprobe.validate as fpvalidate';

/*
 * Services -> Flow probe -> Status: the daemon's own numbers (ubus flowprobe
 * status and flows), refreshed every POLL_SECONDS. Rates are differences of
 * the daemon's counters between two polls; the chart keeps HISTORY samples.
 */

var POLL_SECONDS = 5,
    HISTORY = 60;   /* 5 minutes at one sample every 5 s */

var callStatus = rpc.declare({ object: 'luci.flowprobe', method: 'status', expect: { '': {} } });
/* python-ubus passes no arguments: the 100 busiest flows by bytes; the
 * filter box filters them here, in the browser */
var callFlows = rpc.declare({ object: 'luci.flowprobe', method: 'flows', expect: { '': {} } });
var callExpire = rpc.declare({ object: 'luci.flowprobe', method: 'expire', expect: { '': {} } });
var callReload = rpc.declare({ object: 'luci.flowprobe', method: 'reload', expect: { '': {} } });

var PROTOCOL_NAMES = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6',
                       132: 'SCTP', 136: 'UDP-Lite' };

/* a collector's port 0 is its protocol's default (export/collectors.py) */
var DEFAULT_PORTS = { ipfix: 4739, netflow9: 2055, netflow5: 2055 };

function notRunning(error) {
	/* rpcd answers "Object not found" while no flowprobe is on ubus */
	return error instanceof Error && /Object not found|not running/.test(error.message);
}

function quiet(promise) {
	return promise.then(function(v) { return v }, function(e) { return e });
}

function number(n) {
	return (n == null) ? '-' : String(n).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
}

function bytes(n) {
	var units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB' ], i = 0;
	if (n == null)
		return '-';
	while (n >= 1024 && i < units.length - 1) {
		n /= 1024;
		i++;
	}
	return (i ? '%.1f %s' : '%d %s').format(n, units[i]);
}

function rate(n, unit) {
	if (n == null)
		return '-';
	var prefixes = [ '', 'k', 'M', 'G', 'T' ], i = 0;
	while (n >= 1000 && i < prefixes.length - 1) {
		n /= 1000;
		i++;
	}
	return '%.1f %s%s/s'.format(n, prefixes[i], unit);
}

function age(ms) {
	if (ms == null)
		return '-';
	var s = Math.max(0, Math.round(ms / 1000));
	if (s < 120)
		return _('%d s').format(s);
	if (s < 7200)
		return _('%d min').format(Math.round(s / 60));
	return _('%d h').format(Math.round(s / 3600));
}

function sourceName(source) {
	return { capture: _('packet capture'), conntrack: _('conntrack'),
	         both: _('packet capture and conntrack') }[source] || source || '-';
}

/* host:port/transport, as the daemon sends to it */
function destination(c) {
	if (!c.host)
		return '-';
	var port = c.port || DEFAULT_PORTS[c.protocol];
	return '%s:%s/%s'.format(c.host.indexOf(':') >= 0 ? '[' + c.host + ']' : c.host,
	                         port != null ? port : '?', c.transport || 'udp');
}

function fillBar(fill) {
	return E('div', { 'class': 'cbi-progressbar', 'title': '%.1f%%'.format(fill) },
		E('div', { 'style': 'width:%.1f%%'.format(Math.min(100, fill)) }));
}

function row(title, field, content) {
	return E('tr', { 'class': 'tr' }, [
		E('td', { 'class': 'td left', 'width': '33%' }, title),
		E('td', field ? { 'class': 'td left', 'data-field': field } : { 'class': 'td left' }, content)
	]);
}

function endpoint(flow, side) {
	var address = flow[side + '_addr'], port = flow[side + '_port'],
	    ported = (flow.protocol == 6 || flow.protocol == 17 || flow.protocol == 132 ||
	              flow.protocol == 136);
	if (!ported)
		return address;
	return (flow.ip_version == 6 ? '[%s]:%d' : '%s:%d').format(address, port);
}

/* an SVG line chart of the last samples; E() makes HTML elements only */
function svg(tag, attributes) {
	var node = document.createElementNS('http://www.w3.org/2000/svg', tag);
	for (var key in attributes)
		node.setAttribute(key, attributes[key]);
	return node;
}

return view.extend({
	load: function() {
		return Promise.all([
			quiet(callStatus()),
			quiet(callFlows()),
			quiet(uci.load('flowprobe'))
		]);
	},

	history: null,
	previous: null,
	flows: null,

	/* ---- the parts of the page ---- */

	renderBanner: function(status) {
		var node = E('div', { 'id': 'flowprobe-banner' });
		if (notRunning(status)) {
			var problem = this.configProblem(), enabled = uci.get('flowprobe', 'main', 'enabled');
			node.appendChild(E('div', { 'class': 'alert-message warning', 'data-state': 'stopped' }, [
				E('h4', _('The flow probe is not running')),
				problem
					? E('p', [ _('Its configuration is refused, so it cannot start:'), ' ',
					           E('code', { 'data-config-error': '' }, problem) ])
					: E('p', (enabled == '1' || enabled == 'yes' || enabled == 'on' ||
					          enabled == 'true' || enabled == 'enabled')
						? _('Start it with /etc/init.d/flowprobe start, or look at the system log (logread -e flowprobe).')
						: _('It is disabled: enable it in the settings.'))
			]));
		}
		else if (status instanceof Error) {
			node.appendChild(E('div', { 'class': 'alert-message error', 'data-state': 'error' }, [
				E('h4', _('Cannot read the flow probe\'s status')),
				E('p', status.message)
			]));
		}
		else if (status.config_error) {
			node.appendChild(E('div', { 'class': 'alert-message warning', 'data-state': 'misconfigured' }, [
				E('h4', _('The last configuration change was refused')),
				E('p', [ _('Still running the previous configuration. The error:'), ' ',
				         E('code', { 'data-config-error': '' }, status.config_error) ])
			]));
		}
		if (!(status instanceof Error) && status.conntrack && status.conntrack.error)
			node.appendChild(E('div', { 'class': 'alert-message warning', 'data-state': 'conntrack' }, [
				E('h4', status.conntrack.running
					? _('The conntrack source runs without byte and packet counts')
					: _('The conntrack source is not running')),
				E('p', { 'data-conntrack-error': '' }, status.conntrack.error)
			]));
		if (!(status instanceof Error) && (status.warnings || []).length)
			node.appendChild(E('div', { 'class': 'alert-message notice', 'data-state': 'warnings' }, [
				E('h4', _('Configuration warnings')),
				E('ul', status.warnings.map(function(w) { return E('li', w) }))
			]));
		return node;
	},

	/* why a stopped daemon would refuse its saved config (the daemon's own checks) */
	configProblem: function() {
		var sections = uci.sections('flowprobe');
		if (!sections.length)
			return null;
		return fpvalidate.checkConfig(sections.map(function(s) {
			var options = {};
			for (var key in s)
				if (key.charAt(0) != '.')
					options[key] = s[key];
			return { type: s['.type'], name: s['.anonymous'] ? null : s['.name'], options: options };
		}));
	},

	renderOverview: function(status) {
		var meter = status.meter || {},
		    fill = (meter.table_fill || 0) * 100;
		return E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Flow table')),
			E('table', { 'class': 'table', 'id': 'flowprobe-table' }, [
				row(_('Metering source'), 'source', sourceName(status.source || 'capture')),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left', 'width': '33%' }, _('Active flows / capacity')),
					E('td', { 'class': 'td left', 'data-field': 'fill' }, [
						'%s / %s (%.1f%%)'.format(number(meter.flows_active), number(meter.max_flows), fill),
						fillBar(fill)
					])
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Evicted (table full)')),
					E('td', { 'class': 'td left', 'data-field': 'evicted' }, number(meter.flows_evicted))
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Refused (table full)')),
					E('td', { 'class': 'td left' }, number(meter.dropped_flow_table_full))
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Peak / created')),
					E('td', { 'class': 'td left' }, '%s / %s'.format(number(meter.flows_peak), number(meter.flows_created)))
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Packets not in a flow')),
					E('td', { 'class': 'td left' }, _('%s non-IP, %s truncated, %s malformed, %s orphaned fragments').format(
						number(meter.dropped_non_ip), number(meter.dropped_truncated),
						number(meter.dropped_malformed), number(meter.dropped_fragment_orphaned)))
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Memory (fixed at start)')),
					E('td', { 'class': 'td left' }, bytes(meter.memory_bytes))
				]),
				E('tr', { 'class': 'tr' }, [
					E('td', { 'class': 'td left' }, _('Version / running for')),
					E('td', { 'class': 'td left' }, '%s / %s'.format(status.version || '-', age((status.uptime_s || 0) * 1000)))
				])
			])
		]);
	},

	/* the conntrack source (status.conntrack, null when the source is capture) */
	renderConntrack: function(status) {
		var ct = status.conntrack, fill = (ct.table_fill || 0) * 100,
		    rows = [
			row(_('Connections / capacity'), 'conntrack-fill', [
				'%s / %s (%.1f%%)'.format(number(ct.connections), number(ct.capacity), fill),
				fillBar(fill)
			]),
			row(_('State'), 'conntrack-state', ct.running
				? _('reading the kernel\'s connection tracker') : E('strong', _('not running'))),
			row(_('Accounting'), 'conntrack-accounting', ct.accounting
				? _('on (net.netfilter.nf_conntrack_acct = 1)')
				: E('strong', _('off: records carry no byte or packet counts'))),
			row(_('Events (new / ended)'), 'conntrack-events',
				'%s / %s'.format(number(ct.events_new), number(ct.events_destroy))),
			row(_('Table reads'), 'conntrack-dumps', number(ct.dumps)),
			row(_('Overruns / resyncs'), 'conntrack-overruns',
				E('span', { 'title': _('Events the kernel dropped (socket buffer full), and the table reads that recovered them') },
					'%s / %s'.format(number(ct.overruns), number(ct.resyncs)))),
			row(_('Overflows (table full)'), 'conntrack-overflows',
				_('%s not tracked, %s ended untracked (reported whole)').format(
					number(ct.overflows), number(ct.destroys_untracked))),
			row(_('Vanished'), 'conntrack-vanished',
				E('span', { 'title': _('Gone without an end event: reported with their last counters') },
					number(ct.vanished))),
			row(_('Records (lost)'), 'conntrack-records',
				_('%s (%s lost): %s packets, %s').format(number(ct.records), number(ct.records_lost),
					number(ct.packets), bytes(ct.octets))),
			row(_('Peak / memory (fixed at start)'), null,
				'%s / %s'.format(number(ct.peak), bytes(ct.memory_bytes)))
		];
		if (ct.not_seen_by_capture)
			rows.push(row(_('Not seen by capture'), 'not-seen', [
				_('%s packets, %s').format(number(ct.not_seen_by_capture.packets),
				                           bytes(ct.not_seen_by_capture.octets)),
				E('br'),
				E('small', _('Counted by conntrack beyond what capture metered, since start: offloaded traffic, or traffic bypassing the captured interfaces.'))
			]));
		return E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Conntrack')),
			E('table', { 'class': 'table', 'id': 'flowprobe-conntrack' }, rows)
		]);
	},

	renderInterfaces: function(status, rates) {
		var rows = (status.interfaces || []).map(function(i) {
			var r = rates[i.name] || {};
			return E('tr', { 'class': 'tr', 'data-interface': i.name }, [
				E('td', { 'class': 'td' }, i.name + (i.device && i.device != i.name ? ' (' + i.device + ')' : '')),
				E('td', { 'class': 'td' }, i.up ? _('capturing') : E('strong', _('down'))),
				E('td', { 'class': 'td' }, i.direction || '-'),
				E('td', { 'class': 'td', 'data-field': 'packet-rate' }, rate(r.packets, _('pkt'))),
				E('td', { 'class': 'td', 'data-field': 'byte-rate' }, rate(r.bytes, 'B')),
				E('td', { 'class': 'td' }, number(i.packets_read)),
				E('td', { 'class': 'td', 'data-field': 'drops' },
					_('%s kernel, %s interface').format(number(i.pcap_dropped), number(i.pcap_if_dropped))),
				E('td', { 'class': 'td' }, i.error || '')
			]);
		});
		return E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Interfaces')),
			E('table', { 'class': 'table', 'id': 'flowprobe-interfaces' }, [
				E('tr', { 'class': 'tr table-titles' }, [
					E('th', { 'class': 'th' }, _('Interface')),
					E('th', { 'class': 'th' }, _('State')),
					E('th', { 'class': 'th' }, _('Direction')),
					E('th', { 'class': 'th' }, _('Packets')),
					E('th', { 'class': 'th' }, _('Bytes')),
					E('th', { 'class': 'th' }, _('Packets read')),
					E('th', { 'class': 'th' }, _('Dropped')),
					E('th', { 'class': 'th' }, _('Error'))
				])
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder' },
				E('td', { 'class': 'td' }, E('em', _('No interface configured')))) ]))
		]);
	},

	renderCollectors: function(status) {
		var now = Date.now(),
		    spools = (status.collectors || []).some(function(c) { return c.spool_budget != null });
		var rows = (status.collectors || []).map(function(c) {
			var healthy = !c.errors && !c.records_not_sent;
			return E('tr', { 'class': 'tr', 'data-collector': c.collector }, [
				E('td', { 'class': 'td' }, c.collector),
				E('td', { 'class': 'td', 'data-field': 'destination' }, destination(c)),
				E('td', { 'class': 'td' }, (c.protocol || '-') + (c.group ? ' (' + _('group %s').format(c.group) + ')' : '')),
				E('td', { 'class': 'td', 'data-field': 'health' }, healthy
					? _('OK') : E('strong', _('losing records'))),
				E('td', { 'class': 'td', 'data-field': 'records-sent' }, number(c.records_sent)),
				E('td', { 'class': 'td' }, number(c.records_not_sent)),
				E('td', { 'class': 'td' }, number(c.errors)),
				E('td', { 'class': 'td' }, c.last_error
					? '%s (%s)'.format(c.last_error, _('%s ago').format(age(now - c.last_error_time * 1000)))
					: '-'),
				E('td', { 'class': 'td', 'data-field': 'last-template' }, c.last_template_ms
					? _('%s ago').format(age(now - c.last_template_ms)) : _('never'))
			].concat(spools ? [ E('td', { 'class': 'td', 'data-field': 'spool' }, c.spool_budget == null ? '-'
				: [ _('%s of %s: %s messages').format(bytes(c.spool_octets), bytes(c.spool_budget),
				                                     number(c.spooled_messages)),
				    fillBar(c.spool_budget ? 100 * c.spool_octets / c.spool_budget : 0),
				    E('br'),
				    E('small', _('%s records spooled since start').format(number(c.records_spooled))),
				    c.spool_write_errors ? E('strong', ' ' + _('%s write errors').format(number(c.spool_write_errors))) : ''
				  ]) ] : []));
		});
		return E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Collectors')),
			E('table', { 'class': 'table', 'id': 'flowprobe-collectors' }, [
				E('tr', { 'class': 'tr table-titles' }, [
					E('th', { 'class': 'th' }, _('Collector')),
					E('th', { 'class': 'th' }, _('Destination')),
					E('th', { 'class': 'th' }, _('Protocol')),
					E('th', { 'class': 'th' }, _('Health')),
					E('th', { 'class': 'th' }, _('Records sent')),
					E('th', { 'class': 'th' }, _('Records not sent')),
					E('th', { 'class': 'th' }, _('Errors')),
					E('th', { 'class': 'th' }, _('Last error')),
					E('th', { 'class': 'th' }, _('Last template'))
				].concat(spools ? [ E('th', { 'class': 'th' }, _('Spool')) ] : []))
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder' },
				E('td', { 'class': 'td' }, E('em', _('No collector: records are counted, not sent')))) ]))
		]);
	},

	renderChart: function() {
		var width = 600, height = 140, samples = this.history,
		    top = Math.max.apply(null, [ 1 ].concat(samples.map(function(s) { return s.bytes }))),
		    chart = svg('svg', { 'viewBox': '0 0 %d %d'.format(width, height), 'width': '100%',
		                         'height': height, 'id': 'flowprobe-chart' });
		chart.appendChild(svg('rect', { 'x': 0, 'y': 0, 'width': width, 'height': height,
		                                'fill': 'none', 'stroke': '#ccc' }));
		if (samples.length > 1) {
			var points = samples.map(function(s, i) {
				return '%.1f,%.1f'.format((HISTORY - samples.length + i) * width / (HISTORY - 1),
				                          height - 4 - (height - 8) * s.bytes / top);
			});
			chart.appendChild(svg('polyline', { 'points': points.join(' '), 'fill': 'none',
			                                    'stroke': '#2a6ebb', 'stroke-width': 2 }));
		}
		var last = samples.length ? samples[samples.length - 1] : null;
		return E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Throughput, last 5 minutes')),
			chart,
			E('p', { 'data-field': 'throughput' }, last
				? _('Now: %s, %s; peak %s').format(rate(last.bytes, 'B'), rate(last.packets, _('pkt')), rate(top, 'B'))
				: _('Collecting samples...'))
		]);
	},

	renderFlows: function() {
		var reply = this.flows, filter = (this.filterText || '').trim().toLowerCase(),
		    now = Date.now();
		if (reply instanceof Error)
			return E('p', reply.message);
		var flows = (reply.flows || []).filter(function(f) {
			if (!filter)
				return true;
			var text = [ endpoint(f, 'src'), endpoint(f, 'dst'), PROTOCOL_NAMES[f.protocol] || f.protocol,
			             f['interface'] || '' ].join(' ').toLowerCase();
			return filter.split(/\s+/).every(function(word) { return text.indexOf(word) >= 0 });
		});
		var rows = flows.map(function(f) {
			return E('tr', { 'class': 'tr', 'data-flow': '' }, [
				E('td', { 'class': 'td' }, PROTOCOL_NAMES[f.protocol] || String(f.protocol)),
				E('td', { 'class': 'td' }, endpoint(f, 'src')),
				E('td', { 'class': 'td' }, endpoint(f, 'dst')),
				E('td', { 'class': 'td' }, f['interface'] || '-'),
				E('td', { 'class': 'td' }, number(f.packets)),
				E('td', { 'class': 'td' }, bytes(f.octets)),
				E('td', { 'class': 'td' }, age(f.age_ms != null ? f.age_ms : now - f.flow_start_ms))
			]);
		});
		return E('div', {}, [
			E('p', { 'data-field': 'flow-count' }, _('%d of the %d busiest flows shown (%d active)').format(
				flows.length, (reply.flows || []).length, reply.active || 0)),
			E('table', { 'class': 'table', 'id': 'flowprobe-flows' }, [
				E('tr', { 'class': 'tr table-titles' }, [
					E('th', { 'class': 'th' }, _('Protocol')),
					E('th', { 'class': 'th' }, _('Source')),
					E('th', { 'class': 'th' }, _('Destination')),
					E('th', { 'class': 'th' }, _('Interface')),
					E('th', { 'class': 'th' }, _('Packets')),
					E('th', { 'class': 'th' }, _('Bytes')),
					E('th', { 'class': 'th' }, _('Age'))
				])
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder' },
				E('td', { 'class': 'td' }, E('em', _('No flow matches')))) ]))
		]);
	},

	/* ---- live updates ---- */

	sample: function(status) {
		var now = Date.now(), rates = {}, total = { packets: null, bytes: null };
		if (status instanceof Error || !status.meter)
			return rates;
		var current = { time: now, meter: status.meter, interfaces: {} };
		(status.interfaces || []).forEach(function(i) { current.interfaces[i.name] = i });
		var previous = this.previous;
		if (previous && now > previous.time && status.running_since == previous.since) {
			var seconds = (now - previous.time) / 1000;
			for (var name in current.interfaces) {
				var was = previous.interfaces[name], is = current.interfaces[name];
				if (!was)
					continue;
				rates[name] = {
					packets: Math.max(0, is.packets_read - was.packets_read) / seconds,
					/* per-interface bytes where the daemon reports them */
					bytes: (is.octets_read != null && was.octets_read != null)
						? Math.max(0, is.octets_read - was.octets_read) / seconds : null
				};
			}
			total.packets = Math.max(0, status.meter.packets_read - previous.meter.packets_read) / seconds;
			total.bytes = Math.max(0, status.meter.octets_metered - previous.meter.octets_metered) / seconds;
			this.history.push(total);
			if (this.history.length > HISTORY)
				this.history.shift();
		}
		current.since = status.running_since;
		this.previous = current;
		return rates;
	},

	update: function(status) {
		var page = this.page;
		var rates = this.sample(status), parts = [ this.renderBanner(status) ];
		if (!(status instanceof Error)) {
			/* the chart, interfaces and busiest flows are packet capture's */
			var captures = (status.source != 'conntrack');
			if (captures)
				parts.push(this.renderChart());
			if (captures || (status.interfaces || []).length)
				parts.push(this.renderInterfaces(status, rates));
			parts.push(this.renderOverview(status));
			if (status.conntrack)
				parts.push(this.renderConntrack(status));
			parts.push(this.renderCollectors(status));
			if (captures)
				parts.push(this.renderFlowSection());
		}
		this.lastStatus = status;
		L.dom.content(page, parts);
		(this.buttons || []).forEach(function(button) {
			button.disabled = (status instanceof Error);
		});
	},

	renderFlowSection: function() {
		if (!this.flowSection) {
			this.flowTable = E('div', { 'id': 'flowprobe-flow-table' });
			this.flowSection = E('div', { 'class': 'cbi-section' }, [
				E('h3', _('Busiest flows')),
				E('input', {
					'type': 'text', 'class': 'cbi-input-text', 'id': 'flowprobe-filter',
					'placeholder': _('Filter: address, port, protocol or interface'),
					'input': L.bind(function(ev) {
						this.filterText = ev.target.value;
						L.dom.content(this.flowTable, this.renderFlows());
					}, this)
				}),
				this.flowTable
			]);
		}
		L.dom.content(this.flowTable, this.renderFlows());
		return this.flowSection;
	},

	refresh: function() {
		return Promise.all([ quiet(callStatus()), quiet(callFlows()) ]).then(L.bind(function(data) {
			this.flows = data[1];
			this.update(data[0]);
		}, this));
	},

	/* ---- actions ---- */

	handleExpire: function(ev) {
		return callExpire().then(L.bind(function(reply) {
			if (reply.error)
				throw new Error(reply.error);
			ui.addNotification(null, E('p', { 'data-result': 'expire' },
				_('%d flows ended and exported.').format(reply.expired || 0)), 'info');
			return this.refresh();
		}, this)).catch(function(e) {
			ui.addNotification(null, E('p', _('Flushing the flows failed: %s').format(e.message)), 'error');
		});
	},

	handleReload: function(ev) {
		return callReload().then(L.bind(function(reply) {
			if (reply.reloaded)
				ui.addNotification(null, E('p', { 'data-result': 'reload' },
					_('Configuration reloaded.')), 'info');
			else
				ui.addNotification(null, E('p', { 'data-result': 'reload' },
					_('Reload refused, still running the previous configuration: %s').format(reply.error || '?')), 'error');
			return this.refresh();
		}, this)).catch(function(e) {
			ui.addNotification(null, E('p', _('Reload failed: %s').format(e.message)), 'error');
		});
	},

	render: function(data) {
		this.history = [];
		this.flows = data[1];
		this.page = E('div', { 'id': 'flowprobe-status' });
		this.buttons = [
			E('button', {
				'class': 'cbi-button cbi-button-remove', 'id': 'flowprobe-expire',
				'title': _('End every flow now and export it'),
				'click': ui.createHandlerFn(this, 'handleExpire')
			}, _('Flush flows')),
			E('button', {
				'class': 'cbi-button cbi-button-action', 'id': 'flowprobe-reload',
				'title': _('Read /etc/config/flowprobe again'),
				'click': ui.createHandlerFn(this, 'handleReload')
			}, _('Reload'))
		];
		this.update(data[0]);
		poll.add(L.bind(this.refresh, this), POLL_SECONDS);
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('Flow probe')),
			E('div', { 'class': 'cbi-map-descr' },
				_('Flows metered on this router and exported to IPFIX / NetFlow collectors. Refreshed every %d seconds.').format(POLL_SECONDS)),
			E('div', { 'class': 'cbi-page-actions' }, [ this.buttons[0], ' ', this.buttons[1] ]),
			this.page
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
