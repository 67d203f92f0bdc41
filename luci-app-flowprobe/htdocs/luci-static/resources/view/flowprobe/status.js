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
 * the daemon's counters between two polls at least MIN_SAMPLE_MS apart (LuCI
 * polls once right after the page is drawn: a rate over a fraction of a
 * second would be mostly noise). The chart keeps an hour of samples for the
 * browser tab (sessionStorage, so a reload after Save & Apply keeps them);
 * the daemon keeps no history.
 */

var POLL_SECONDS = 5,
    MIN_SAMPLE_MS = 2000,
    HISTORY_MS = 3600 * 1000,
    GAP_MS = 4 * POLL_SECONDS * 1000,   /* a longer silence breaks the line */
    RANGES = [ [ 300, _('5 minutes') ], [ 3600, _('1 hour') ] ],
    COLORS = [ '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b' ],
    STORAGE_KEY = 'flowprobe-throughput';

var callStatus = rpc.declare({ object: 'luci.flowprobe', method: 'status', expect: { '': {} } });
/* python-ubus passes no arguments: the 100 busiest flows by bytes; the
 * filter box filters them here, in the browser */
var callFlows = rpc.declare({ object: 'luci.flowprobe', method: 'flows', expect: { '': {} } });
var callExpire = rpc.declare({ object: 'luci.flowprobe', method: 'expire', expect: { '': {} } });
var callReload = rpc.declare({ object: 'luci.flowprobe', method: 'reload', expect: { '': {} } });

var PROTOCOL_NAMES = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6',
                       132: 'SCTP', 136: 'UDP-Lite' };

/* ICMP type (and type/code) names: RFC 792, 4443 and IANA's registries */
var ICMP_TYPES = {
	1: { 0: 'echo reply', 3: 'unreachable', 4: 'source quench', 5: 'redirect',
	     8: 'echo request', 9: 'router advertisement', 10: 'router solicitation',
	     11: 'time exceeded', 12: 'parameter problem', 13: 'timestamp',
	     14: 'timestamp reply' },
	58: { 1: 'unreachable', 2: 'packet too big', 3: 'time exceeded', 4: 'parameter problem',
	      128: 'echo request', 129: 'echo reply', 130: 'MLD query', 131: 'MLD report',
	      133: 'router solicitation', 134: 'router advertisement',
	      135: 'neighbor solicitation', 136: 'neighbor advertisement', 137: 'redirect',
	      143: 'MLDv2 report' }
};
var ICMP_UNREACHABLE = {
	1: { 0: 'network unreachable', 1: 'host unreachable', 2: 'protocol unreachable',
	     3: 'port unreachable', 4: 'fragmentation needed', 9: 'network prohibited',
	     10: 'host prohibited', 13: 'administratively prohibited' },
	58: { 0: 'no route', 1: 'administratively prohibited', 3: 'address unreachable',
	      4: 'port unreachable', 5: 'source address failed policy', 6: 'reject route' }
};

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

/* SI prefixes, as rates are given on links (kbit/s, MB/s) */
function si(n, unit) {
	var prefixes = [ '', 'k', 'M', 'G', 'T' ], i = 0;
	while (Math.abs(n) >= 1000 && i < prefixes.length - 1) {
		n /= 1000;
		i++;
	}
	return ((n >= 100 || i == 0) ? '%.0f %s%s' : '%.1f %s%s').format(n, prefixes[i], unit);
}

function rate(n, unit) {
	return (n == null) ? '-' : si(n, unit) + '/s';
}

/* a byte rate as a link speed, with the bytes: "97.6 kbit/s (12.2 kB/s)" */
function bitRate(bytes) {
	return (bytes == null) ? '-' : '%s (%s)'.format(rate(bytes * 8, 'bit'), rate(bytes, 'B'));
}

/* "echo request", "port unreachable"; type/code ride in the destination
 * port (IPFIX icmpTypeCode: type * 256 + code) */
function icmpName(flow) {
	var type = (flow.dst_port >> 8) & 0xff, code = flow.dst_port & 0xff,
	    v6 = (flow.protocol == 58), name = (ICMP_TYPES[flow.protocol] || {})[type];
	if (type == (v6 ? 1 : 3))
		return ICMP_UNREACHABLE[flow.protocol][code] || _('unreachable, code %d').format(code);
	if (type == (v6 ? 3 : 11))
		return (code == 0) ? (v6 ? 'hop limit exceeded' : 'TTL exceeded')
			: (code == 1 ? 'reassembly time exceeded' : name);
	if (name)
		return code ? _('%s, code %d').format(name, code) : name;
	return _('type %d, code %d').format(type, code);
}

function isIcmp(flow) {
	return flow.protocol == 1 || flow.protocol == 58;
}

function protocolText(flow) {
	var name = PROTOCOL_NAMES[flow.protocol] || String(flow.protocol);
	return isIcmp(flow) ? '%s %s'.format(name, icmpName(flow)) : name;
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

/* the device at a flow's local end (the daemon's enrich/devices.py: leases,
 * static hosts, neighbours): its name, else its MAC */
function deviceText(flow) {
	var device = flow.src_device || flow.dst_device;
	return device ? (device.name || device.mac || '') : '';
}

/* the busiest-flows table's columns: [ key, title, value to sort by, numeric ] */
var FLOW_COLUMNS = [
	[ 'protocol', _('Protocol'), protocolText, false ],
	[ 'src', _('Source'), function(f) { return endpoint(f, 'src') }, false ],
	[ 'dst', _('Destination'), function(f) { return endpoint(f, 'dst') }, false ],
	[ 'interface', _('Interface'), function(f) { return f['interface'] || '' }, false ],
	[ 'packets', _('Packets'), function(f) { return f.packets }, true ],
	[ 'bytes', _('Bytes'), function(f) { return f.octets }, true ],
	[ 'age', _('Age'), function(f) { return f.age_ms }, true ],
	[ 'device', _('Device'), deviceText, false ]
];

function settingsLink(text) {
	return E('a', { 'href': L.url('admin/services/flowprobe/settings') }, text);
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
	rates: null,
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
					           E('code', { 'data-config-error': '' }, problem), ' ',
					           settingsLink(_('Fix it in Settings')) ])
					: E('p', (enabled == '1' || enabled == 'yes' || enabled == 'on' ||
					          enabled == 'true' || enabled == 'enabled')
						? _('Start it with /etc/init.d/flowprobe start, or look at the system log (logread -e flowprobe).')
						: [ _('It is disabled:'), ' ', settingsLink(_('enable it in Settings')) ])
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
				         E('code', { 'data-config-error': '' }, status.config_error), ' ',
				         settingsLink(_('Fix it in Settings')) ])
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
					E('td', { 'class': 'td left' }, _('Memory (reserved at start / in use)')),
					E('td', { 'class': 'td left' }, meter.resident_bytes != null
						? '%s / %s'.format(bytes(meter.memory_bytes), bytes(meter.resident_bytes))
						: bytes(meter.memory_bytes))
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
			row(_('Kernel\'s table (last read)'), 'conntrack-listed', number(ct.listed)),
			row(_('Ended connections'), 'conntrack-events',
				E('span', { 'title': _('Connections the table did not hold (short ones, or beyond its capacity) are reported whole at their end') },
					_('%s, of which %s not held in the table').format(
						number(ct.events_destroy), number(ct.destroys_untracked)))),
			row(_('Table reads'), 'conntrack-dumps', number(ct.dumps)),
			row(_('Overruns / resyncs'), 'conntrack-overruns',
				E('span', { 'title': _('Events the kernel dropped (socket buffer full), and the table reads that recovered them') },
					'%s / %s'.format(number(ct.overruns), number(ct.resyncs)))),
			row(_('Ended while stopped'), 'conntrack-gap',
				E('span', { 'title': _('Connections open at the last stop that were gone at the start: their last traffic was not reported') },
					number(ct.ended_while_stopped))),
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
				E('td', { 'class': 'td', 'data-field': 'byte-rate' }, bitRate(r.bytes)),
				E('td', { 'class': 'td', 'title': bytes(i.octets_read) }, [ number(i.packets_read) ].concat(
					(i.sampling && i.sampling.rate > 1) ? [ E('br'), E('small', { 'data-field': 'sampling' },
						_('1:%d: %s sampled, about %s estimated').format(i.sampling.rate,
							number(i.sampling.packets_sampled), number(i.sampling.packets_estimated))) ] : [])),
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
					E('th', { 'class': 'th' }, _('Throughput')),
					E('th', { 'class': 'th' }, _('Packets read')),
					E('th', { 'class': 'th' }, _('Dropped')),
					E('th', { 'class': 'th' }, _('Error'))
				])
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder', 'data-empty': 'interfaces' },
				E('td', { 'class': 'td', 'colspan': 8 }, E('em', [
					_('No interface metered yet:'), ' ',
					settingsLink(_('choose networks or devices in Settings')) ]))) ]))
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
				E('td', { 'class': 'td', 'data-field': 'records-sent' }, [ number(c.records_sent) ].concat(
					c.protocol == 'sflow' ? [ E('br'), E('small', _('%s flow samples, %s counter samples').format(
						number(c.flow_samples), number(c.counter_samples))) ] : [])),
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
		var unsent = status.records_without_collector;
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
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder', 'data-empty': 'collectors' },
				E('td', { 'class': 'td', 'colspan': 9 }, E('em', [
					_('No collector yet: flows are metered and counted, but sent nowhere.'), ' ',
					settingsLink(_('Add one in Settings')),
					unsent ? ' ' + _('(%s records so far)').format(number(unsent)) : '' ]))) ]))
		]);
	},

	/* ---- the throughput chart ---- */

	/* the samples as kept in the browser tab, for this run of the daemon */
	restoreHistory: function() {
		try {
			var kept = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY) || 'null');
			if (kept && Array.isArray(kept.samples)) {
				this.history = kept.samples;
				this.previous = kept.previous;
			}
		}
		catch (e) { /* no storage: the chart starts empty */ }
	},

	keepHistory: function() {
		try {
			window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
				samples: this.history, previous: this.previous }));
		}
		catch (e) { /* the chart is kept for this page only */ }
	},

	/* rates since the previous sample; a sample is { t, total, interfaces: { name: B/s } } */
	sample: function(status) {
		var now = Date.now();
		if (status instanceof Error || !status.meter)
			return this.rates || {};
		var current = { time: now, since: status.running_since, interfaces: {} };
		(status.interfaces || []).forEach(function(i) {
			current.interfaces[i.name] = { packets: i.packets_read, octets: i.octets_read };
		});
		var previous = this.previous;
		if (!previous || previous.since != current.since || now < previous.time) {
			/* a new run of the daemon: its counters start again */
			if (previous && previous.since != current.since)
				this.history = [];
			this.previous = current;
			this.rates = {};
			return this.rates;
		}
		if (now - previous.time < MIN_SAMPLE_MS)
			return this.rates || {};
		var seconds = (now - previous.time) / 1000, rates = {}, point = { t: now, total: 0, interfaces: {} };
		for (var name in current.interfaces) {
			var was = previous.interfaces[name], is = current.interfaces[name];
			if (!was || is.octets < was.octets)
				continue;
			rates[name] = { packets: (is.packets - was.packets) / seconds,
			                bytes: (is.octets - was.octets) / seconds };
			point.interfaces[name] = rates[name].bytes;
			point.total += rates[name].bytes;
		}
		/* a long silence (the tab was away) is a gap, not an average over it */
		if (now - previous.time <= GAP_MS)
			this.history.push(point);
		while (this.history.length && this.history[0].t < now - HISTORY_MS)
			this.history.shift();
		this.previous = current;
		this.rates = rates;
		this.keepHistory();
		return rates;
	},

	renderChart: function(status) {
		var W = 1000, H = 200, left = 78, right = 10, top = 10, bottom = 24,
		    span = this.range * 1000, now = Date.now(), plotW = W - left - right, plotH = H - top - bottom,
		    samples = this.history.filter(function(p) { return p.t >= now - span }),
		    names = (status.interfaces || []).map(function(i) { return i.name });
		var peak = 0;
		samples.forEach(function(p) {
			names.forEach(function(n) { peak = Math.max(peak, (p.interfaces[n] || 0) * 8) });
		});
		/* the axis goes to a round bit rate: 1, 2 or 5 times a power of ten */
		var scale = 1000;
		while (scale < peak)
			scale *= (String(scale).charAt(0) == '2') ? 2.5 : 2;
		var x = function(t) { return left + plotW * (1 - (now - t) / span) },
		    y = function(bits) { return top + plotH * (1 - bits / scale) };
		var chart = svg('svg', { 'viewBox': '0 0 %d %d'.format(W, H), 'width': '100%',
		                         'id': 'flowprobe-chart', 'data-scale-bits': scale,
		                         'data-range-s': this.range, 'data-plot': [ left, top, plotW, plotH ].join(' '),
		                         'style': 'max-width:%dpx;font-size:11px'.format(W) });
		for (var g = 0; g <= 4; g++) {
			var gy = top + plotH * g / 4;
			chart.appendChild(svg('line', { 'x1': left, 'x2': W - right, 'y1': gy, 'y2': gy,
			                                'stroke': g == 4 ? '#888' : '#ddd' }));
			var label = svg('text', { 'x': left - 6, 'y': gy + 4, 'text-anchor': 'end', 'fill': '#666',
			                          'data-axis': 'y' });
			label.textContent = rate(scale * (4 - g) / 4, 'bit');
			chart.appendChild(label);
		}
		var step = (this.range <= 300) ? 60 : 600;
		for (var s = 0; s <= this.range; s += step) {
			var gx = x(now - s * 1000);
			chart.appendChild(svg('line', { 'x1': gx, 'x2': gx, 'y1': top, 'y2': top + plotH, 'stroke': '#eee' }));
			var tick = svg('text', { 'x': gx, 'y': H - 6, 'text-anchor': s == this.range ? 'start' : 'middle',
			                         'fill': '#666', 'data-axis': 'x' });
			tick.textContent = s ? _('-%d min').format(s / 60) : _('now');
			chart.appendChild(tick);
		}
		names.forEach(function(name, i) {
			var segments = [], segment = [], last = null;
			samples.forEach(function(p) {
				if (p.interfaces[name] == null)
					return;
				if (last != null && p.t - last > GAP_MS && segment.length) {
					segments.push(segment);
					segment = [];
				}
				segment.push('%.1f,%.1f'.format(x(p.t), y(p.interfaces[name] * 8)));
				last = p.t;
			});
			if (segment.length)
				segments.push(segment);
			segments.forEach(function(points) {
				chart.appendChild(svg(points.length > 1 ? 'polyline' : 'circle', points.length > 1
					? { 'points': points.join(' '), 'fill': 'none', 'stroke': COLORS[i % COLORS.length],
					    'stroke-width': 2, 'data-line': name }
					: { 'cx': points[0].split(',')[0], 'cy': points[0].split(',')[1], 'r': 2,
					    'fill': COLORS[i % COLORS.length], 'data-line': name }));
			});
		});
		var rates = this.rates || {};
		var legend = E('div', { 'class': 'flowprobe-legend', 'style': 'margin:4px 0 0 %dpx'.format(left) },
			names.map(function(name, i) {
				var values = samples.map(function(p) { return p.interfaces[name] }).filter(function(v) { return v != null }),
				    mean = values.length ? values.reduce(function(a, b) { return a + b }, 0) / values.length : null;
				return E('span', { 'style': 'margin-right:18px;white-space:nowrap', 'data-legend': name }, [
					E('span', { 'style': 'display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:4px;background:' +
					            COLORS[i % COLORS.length] }),
					E('strong', name), ' ',
					E('span', { 'data-field': 'now' }, bitRate(rates[name] ? rates[name].bytes : null)),
					' · ', _('average %s').format(''),
					E('span', { 'data-field': 'average' }, mean == null ? '-' : bitRate(mean))
				]);
			}));
		var buttons = RANGES.map(L.bind(function(r) {
			return E('button', {
				'class': 'cbi-button' + (r[0] == this.range ? ' cbi-button-positive' : ''),
				'data-range': r[0],
				'click': L.bind(function() { this.range = r[0]; this.update(this.lastStatus) }, this)
			}, r[1]);
		}, this));
		var total = samples.length ? samples[samples.length - 1].total : null;
		return E('div', { 'class': 'cbi-section', 'id': 'flowprobe-throughput' }, [
			E('h3', _('Throughput')),
			E('div', { 'style': 'float:right' }, buttons),
			E('p', { 'data-field': 'throughput' }, total != null
				? _('Now: %s over all metered interfaces (bytes as captured, link headers included).').format(bitRate(total))
				: _('Collecting samples: the first rate shows after two polls, %d s apart.').format(POLL_SECONDS)),
			chart, legend
		]);
	},

	/* ---- busiest flows ---- */

	renderFlows: function() {
		var reply = this.flows, filter = (this.filterText || '').trim().toLowerCase();
		if (reply instanceof Error)
			return E('p', reply.message);
		var all = reply.flows || [];
		var flows = all.filter(function(f) {
			if (!filter)
				return true;
			var text = [ endpoint(f, 'src'), endpoint(f, 'dst'), protocolText(f),
			             f['interface'] || '', deviceText(f) ].join(' ').toLowerCase();
			return filter.split(/\s+/).every(function(word) { return text.indexOf(word) >= 0 });
		});
		var column = FLOW_COLUMNS.filter(L.bind(function(c) { return c[0] == this.sortKey }, this))[0]
		             || FLOW_COLUMNS[5],
		    descending = this.sortDescending, key = column[2], numeric = column[3];
		flows = flows.slice().sort(function(a, b) {
			var va = key(a), vb = key(b),
			    order = numeric ? (va - vb) : String(va).localeCompare(String(vb), undefined, { numeric: true });
			return descending ? -order : order;
		});
		var rows = flows.map(function(f) {
			return E('tr', { 'class': 'tr', 'data-flow': '' }, [
				E('td', { 'class': 'td', 'data-field': 'protocol' }, protocolText(f)),
				E('td', { 'class': 'td' }, endpoint(f, 'src')),
				E('td', { 'class': 'td' }, endpoint(f, 'dst')),
				E('td', { 'class': 'td' }, f['interface'] || '-'),
				E('td', { 'class': 'td' }, number(f.packets)),
				E('td', { 'class': 'td', 'title': _('%s bytes').format(number(f.octets)) }, bytes(f.octets)),
				E('td', { 'class': 'td' }, age(f.age_ms)),
				E('td', { 'class': 'td', 'data-field': 'device',
				          'title': (f.src_device || f.dst_device || {}).mac || '' }, deviceText(f) || '-')
			]);
		});
		var empty = !all.length
			? _('No flow yet: traffic on the metered interfaces shows here within a poll.')
			: _('No flow matches the filter.');
		return E('div', {}, [
			E('p', { 'data-field': 'flow-count' }, _('%d of the %d busiest flows shown (%d active)').format(
				flows.length, all.length, reply.active || 0)),
			E('table', { 'class': 'table', 'id': 'flowprobe-flows' }, [
				E('tr', { 'class': 'tr table-titles' }, FLOW_COLUMNS.map(L.bind(function(c) {
					var sorted = (c[0] == column[0]);
					return E('th', {
						'class': 'th', 'data-sort': c[0], 'style': 'cursor:pointer',
						'title': _('Sort by %s').format(c[1]),
						'click': L.bind(function() {
							this.sortDescending = sorted ? !this.sortDescending : c[3];
							this.sortKey = c[0];
							L.dom.content(this.flowTable, this.renderFlows());
						}, this)
					}, sorted ? '%s %s'.format(c[1], descending ? '\u25bc' : '\u25b2') : c[1]);
				}, this)))
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr placeholder', 'data-empty': 'flows' },
				E('td', { 'class': 'td', 'colspan': FLOW_COLUMNS.length }, E('em', empty))) ]))
		]);
	},

	/* ---- live updates ---- */

	update: function(status) {
		var page = this.page;
		var rates = this.sample(status), parts = [ this.renderBanner(status) ];
		if (!(status instanceof Error)) {
			/* the chart, interfaces and busiest flows are packet capture's */
			var captures = (status.source != 'conntrack');
			if (captures)
				parts.push(this.renderChart(status));
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
					'style': 'width:100%;max-width:32em',
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
		this.range = RANGES[0][0];
		this.sortKey = 'bytes';
		this.sortDescending = true;
		this.restoreHistory();
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
