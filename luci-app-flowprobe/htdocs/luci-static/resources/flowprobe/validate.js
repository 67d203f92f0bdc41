'use strict';
'require baseclass';

/*
 * The daemon's checks of /etc/config/flowprobe (src/flowprobe/config.py,
 * settings.py, export/collectors.py), in the browser: the settings form
 * refuses what the daemon would refuse, with the daemon's own words, and the
 * status page can say why a stopped service will not start.
 *
 * tests/test_luci_validation.py runs these functions in node over a table of
 * values and whole configs and compares every verdict and message with
 * config.py's, so a change on one side without the other fails there.
 */

var TRUE_WORDS = [ '1', 'yes', 'on', 'true', 'enabled' ],
    FALSE_WORDS = [ '0', 'no', 'off', 'false', 'disabled' ],
    BOOLEAN_ALLOWED = '1 or 0 (also yes/no, on/off, true/false, enabled/disabled)',
    DEVICE_NAME_ALLOWED = "an interface name: 1 to 15 characters, no spaces, '/' or ':'",
    HOST_ALLOWED = 'an IPv4 or IPv6 address or a host name',
    USER_NAME_ALLOWED = 'a user name: a letter or _, then up to 31 letters, digits, _ . or -',
    MAX_TIMEOUT_SECONDS = 604800,   /* flow durations are 32-bit milliseconds */
    SUN_PATH_MAX = 107,
    INTEGER_TEXT = /^[0-9]+$/,
    SECONDS_TEXT = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/,
    GROUP = /^[A-Za-z0-9_.-]{1,64}$/,
    USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/,
    HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/* IPFIX elements a collector's field list may name: [name, NetFlow v9 can
 * carry it, reverse (RFC 5103) element]; export/fields.py's ELEMENTS. */
var ELEMENTS = [
	[ 'octetDeltaCount', true, false ], [ 'packetDeltaCount', true, false ],
	[ 'protocolIdentifier', true, false ], [ 'ipClassOfService', true, false ],
	[ 'tcpControlBits', true, false ], [ 'sourceTransportPort', true, false ],
	[ 'sourceIPv4Address', true, false ], [ 'ingressInterface', true, false ],
	[ 'destinationTransportPort', true, false ], [ 'destinationIPv4Address', true, false ],
	[ 'egressInterface', true, false ], [ 'sourceIPv6Address', true, false ],
	[ 'destinationIPv6Address', true, false ], [ 'icmpTypeCodeIPv4', true, false ],
	[ 'vlanId', true, false ], [ 'flowDirection', true, false ], [ 'ipVersion', true, false ],
	[ 'flowEndReason', false, false ], [ 'icmpTypeCodeIPv6', true, false ],
	[ 'flowStartMilliseconds', true, false ], [ 'flowEndMilliseconds', true, false ],
	[ 'dot1qCustomerVlanId', false, false ], [ 'ipSecSPI', false, false ],
	[ 'postNATSourceIPv4Address', true, false ], [ 'postNATDestinationIPv4Address', true, false ],
	[ 'postNAPTSourceTransportPort', true, false ],
	[ 'postNAPTDestinationTransportPort', true, false ],
	[ 'postNATSourceIPv6Address', true, false ], [ 'postNATDestinationIPv6Address', true, false ],
	[ 'flowId', false, false ],
	[ 'reverseOctetDeltaCount', false, true ], [ 'reversePacketDeltaCount', false, true ],
	[ 'reverseTcpControlBits', false, true ], [ 'reverseFlowStartMilliseconds', false, true ],
	[ 'reverseFlowEndMilliseconds', false, true ]
];
var ELEMENT = {};
ELEMENTS.forEach(function(e) { ELEMENT[e[0]] = { v9: e[1], reverse: e[2] } });
var ELEMENT_NAMES_SORTED = ELEMENTS.map(function(e) { return e[0] }).sort(function(a, b) {
	return a < b ? -1 : (a > b ? 1 : 0);   /* Python's sorted(): by code point */
});

/* ---- what the daemon's values look like ---- */

function pyRepr(value) {
	if (Array.isArray(value))
		return '[' + value.map(pyRepr).join(', ') + ']';
	if (typeof(value) == 'boolean')
		return value ? 'True' : 'False';
	if (typeof(value) != 'string')
		return String(value);
	var quote = (value.indexOf("'") >= 0 && value.indexOf('"') < 0) ? '"' : "'",
	    out = quote;
	for (var i = 0; i < value.length; i++) {
		var c = value.charAt(i), code = value.charCodeAt(i);
		if (c == '\\' || c == quote)
			out += '\\' + c;
		else if (c == '\n')
			out += '\\n';
		else if (c == '\r')
			out += '\\r';
		else if (c == '\t')
			out += '\\t';
		else if (code < 32 || code == 127)
			out += '\\x' + ('0' + code.toString(16)).slice(-2);
		else
			out += c;
	}
	return out + quote;
}

function utf8Length(text) {
	return unescape(encodeURIComponent(text)).length;
}

function isDeviceName(name) {
	return typeof(name) == 'string' && utf8Length(name) > 0 && utf8Length(name) < 16 &&
		name != '.' && name != '..' && /^[!-~]+$/.test(name) &&
		name.indexOf('/') < 0 && name.indexOf(':') < 0;
}

function hasControlCharacters(text) {
	for (var i = 0; i < text.length; i++) {
		var code = text.charCodeAt(i);
		if ((code < 32 && code != 9 && code != 10) || code == 127)
			return true;
	}
	return false;
}

/* Python's ipaddress.IPv4Address: four decimal octets, no leading zeros */
function isIPv4(text) {
	var octets = text.split('.');
	if (octets.length != 4)
		return false;
	return octets.every(function(octet) {
		return /^[0-9]{1,3}$/.test(octet) && !(octet.length > 1 && octet.charAt(0) == '0') &&
			+octet <= 255;
	});
}

/* Python's ipaddress.IPv6Address, scope id (%eth0) included */
function isIPv6(text) {
	var percent = text.indexOf('%');
	if (percent >= 0) {
		var scope = text.slice(percent + 1);
		if (scope == '' || scope.indexOf('%') >= 0)
			return false;
		text = text.slice(0, percent);
	}
	var parts = text.split(':');
	if (parts.length < 3)
		return false;
	if (parts[parts.length - 1].indexOf('.') >= 0) {
		if (!isIPv4(parts[parts.length - 1]))
			return false;
		parts.splice(parts.length - 1, 1, '0', '0');
	}
	if (parts.length > 9)
		return false;
	var skip = -1;
	for (var i = 1; i < parts.length - 1; i++) {
		if (parts[i] == '') {
			if (skip >= 0)
				return false;   /* '::' twice */
			skip = i;
		}
	}
	var hi, lo;
	if (skip >= 0) {
		hi = skip;
		lo = parts.length - skip - 1;
		if (parts[0] == '' && --hi)
			return false;
		if (parts[parts.length - 1] == '' && --lo)
			return false;
		if (8 - (hi + lo) < 1)
			return false;
	}
	else {
		if (parts.length != 8 || parts[0] == '' || parts[parts.length - 1] == '')
			return false;
		hi = parts.length;
		lo = 0;
	}
	var hextets = parts.slice(0, hi).concat(lo ? parts.slice(parts.length - lo) : []);
	return hextets.every(function(h) { return /^[0-9A-Fa-f]{1,4}$/.test(h) });
}

function isIPAddress(text) {
	return isIPv4(text) || isIPv6(text);
}

function isHost(text) {
	if (isIPAddress(text))
		return true;
	var labels = (text.charAt(text.length - 1) == '.' ? text.slice(0, -1) : text).split('.');
	return text.length <= 253 &&
		labels.every(function(label) { return HOST_LABEL.test(label) }) &&
		!/^[0-9]+$/.test(labels[labels.length - 1]);   /* 192.0.2.300 is no name */
}

/* ---- the options (config.py's MAIN_OPTIONS, INTERFACE_OPTIONS, COLLECTOR_OPTIONS) ---- */

var BOOLEAN = 'boolean', INTEGER = 'integer', SECONDS = 'seconds', TEXT = 'text', WORDS = 'words';

var METER_OPTIONS = {
	max_flows: [ 'max_flows', INTEGER ], max_fragments: [ 'max_fragments', INTEGER ],
	idle_timeout: [ 'idle_timeout', SECONDS ], active_timeout: [ 'active_timeout', SECONDS ],
	unanswered_timeout: [ 'unanswered_timeout', SECONDS ],
	tcp_end_grace: [ 'tcp_end_grace', SECONDS ],
	fragment_timeout: [ 'fragment_timeout', SECONDS ],
	overflow: [ 'overflow_policy', TEXT ], biflow: [ 'bidirectional', BOOLEAN ],
	hash_seed: [ 'hash_seed', INTEGER ]
};
var CAPTURE_OPTIONS = {
	direction: [ 'direction', TEXT ], promisc: [ 'promiscuous', BOOLEAN ],
	filter: [ 'bpf_filter', TEXT ], snaplen: [ 'snaplen', INTEGER ],
	buffer_kb: [ 'buffer_kb', INTEGER ]
};
var CONNTRACK_OPTIONS = {   /* the metering source (conntrack_settings.py) */
	source: [ 'source', TEXT ],
	conntrack_max_connections: [ 'conntrack_max_connections', INTEGER ],
	conntrack_dump_interval: [ 'conntrack_dump_interval', SECONDS ],
	conntrack_vanish_grace: [ 'conntrack_vanish_grace', SECONDS ],
	conntrack_buffer_kb: [ 'conntrack_buffer_kb', INTEGER ]
};
var MAIN_OPTIONS = Object.assign({
	enabled: [ 'enabled', BOOLEAN ], 'interface': [ 'interfaces', WORDS ],
	log_level: [ 'log_level', TEXT ], control_socket: [ 'control_socket', TEXT ],
	user: [ 'user', TEXT ], spool_dir: [ 'spool_dir', TEXT ]
}, METER_OPTIONS, CAPTURE_OPTIONS, CONNTRACK_OPTIONS);
var INTERFACE_OPTIONS = Object.assign({
	name: [ 'name', TEXT ], device: [ 'device', TEXT ]
}, CAPTURE_OPTIONS);
var COLLECTOR_OPTIONS = {
	enabled: [ 'enabled', BOOLEAN ], protocol: [ 'protocol', TEXT ], host: [ 'host', TEXT ],
	port: [ 'port', INTEGER ], transport: [ 'transport', TEXT ], biflow: [ 'biflow', BOOLEAN ],
	field: [ 'fields', WORDS ], fields: [ 'fields', WORDS ],
	observation_domain: [ 'observation_domain', INTEGER ],
	template_refresh_seconds: [ 'template_refresh_seconds', INTEGER ],
	template_refresh_packets: [ 'template_refresh_packets', INTEGER ],
	stats_interval: [ 'stats_interval', INTEGER ], mtu: [ 'mtu', INTEGER ],
	source_address: [ 'source_address', TEXT ], group: [ 'group', TEXT ],
	queue_limit: [ 'queue_limit', INTEGER ], spool_kb: [ 'spool_kb', INTEGER ]
};
var SECTION_TYPES = { flowprobe: MAIN_OPTIONS, 'interface': INTERFACE_OPTIONS,
                      collector: COLLECTOR_OPTIONS };

/* A problem with one option: config.py's ConfigError, said the same way. */
function Problem(section, option, value, allowed, problem) {
	this.section = section;
	this.option = option;
	this.value = value;
	this.allowed = allowed;
	this.problem = problem || ('invalid value ' + pyRepr(value) + ' (allowed: ' + allowed + ')');
}
Problem.prototype.toString = function() {
	return 'flowprobe.' + this.section + (this.option ? '.' + this.option : '') + ': ' +
		this.problem;
};

/* A field's value out of range: (field, value, allowed), as OptionError. */
function FieldError(field, value, allowed) {
	this.field = field;
	this.value = value;
	this.allowed = allowed;
}

function isInteger(value) {
	return typeof(value) == 'bigint';
}

function intIn(value, low, high) {
	return isInteger(value) && value >= BigInt(low) && value <= BigInt(high);
}

function convert(label, option, raw, kind) {
	if (kind == WORDS) {
		var words = [];
		(Array.isArray(raw) ? raw : [ raw ]).forEach(function(item) {
			String(item).split(/\s+/).forEach(function(w) { if (w != '') words.push(w) });
		});
		return words;
	}
	if (Array.isArray(raw))
		throw new Problem(label, option, raw, 'one value (option ' + option + ', not list)');
	if (kind == BOOLEAN) {
		if (TRUE_WORDS.indexOf(raw) >= 0)
			return true;
		if (FALSE_WORDS.indexOf(raw) >= 0)
			return false;
		throw new Problem(label, option, raw, BOOLEAN_ALLOWED);
	}
	if (kind == INTEGER && INTEGER_TEXT.test(raw))
		return BigInt(raw);
	if (kind == SECONDS && SECONDS_TEXT.test(raw))
		return parseFloat(raw);
	return raw;   /* text that is no number: the field's own check says what it allows */
}

function checkInt(field, value, low, high) {
	if (!intIn(value, low, high))
		throw new FieldError(field, value, 'an integer from ' + low + ' to ' + high);
}

function checkSeconds(field, value, low) {
	if (typeof(value) != 'number' && !isInteger(value) ||
	    !(Number(value) >= low && Number(value) <= MAX_TIMEOUT_SECONDS))
		throw new FieldError(field, value, 'seconds from ' + low + ' to ' + MAX_TIMEOUT_SECONDS);
}

/* settings.py MeterSettings.__post_init__ */
function checkMeter(v) {
	checkInt('max_flows', v.max_flows, 1, 16777216);
	checkInt('max_fragments', v.max_fragments, 1, 1048576);
	[ 'idle_timeout', 'active_timeout', 'unanswered_timeout', 'fragment_timeout' ].forEach(
		function(field) { checkSeconds(field, v[field], 0.001) });
	checkSeconds('tcp_end_grace', v.tcp_end_grace, 0);
	if ([ 'evict', 'refuse' ].indexOf(v.overflow_policy) < 0)
		throw new FieldError('overflow_policy', v.overflow_policy, 'evict or refuse');
	checkInt('hash_seed', v.hash_seed, 0, '18446744073709551615');
}

var METER_DEFAULTS = { max_flows: BigInt(65536), max_fragments: BigInt(4096), idle_timeout: 15,
	active_timeout: 300, unanswered_timeout: 5, tcp_end_grace: 2, fragment_timeout: 30,
	overflow_policy: 'evict', bidirectional: false, hash_seed: BigInt(0) };
var INTERFACE_DEFAULTS = { device: '', bpf_filter: '', promiscuous: false, direction: 'in',
	snaplen: BigInt(128), buffer_kb: BigInt(2048) };

/* config.py InterfaceConfig.__post_init__ */
function checkInterface(v) {
	[ 'name', 'device' ].forEach(function(field) {
		if (!(field == 'device' && v[field] === '') && !isDeviceName(v[field]))
			throw new FieldError(field, v[field], DEVICE_NAME_ALLOWED);
	});
	if (typeof(v.bpf_filter) != 'string' || hasControlCharacters(v.bpf_filter))
		throw new FieldError('bpf_filter', v.bpf_filter,
			'a libpcap filter expression (no control characters)');
	if ([ 'in', 'out', 'both' ].indexOf(v.direction) < 0)
		throw new FieldError('direction', v.direction, 'in, out, both');
	if (!intIn(v.snaplen, 64, 262144))
		throw new FieldError('snaplen', v.snaplen, 'bytes from 64 to 262144');
	if (!intIn(v.buffer_kb, 0, 1048576))
		throw new FieldError('buffer_kb', v.buffer_kb,
			"0 (libpcap's default) or kilobytes up to 1048576");
}

var COLLECTOR_DEFAULTS = { port: BigInt(0), protocol: 'ipfix', transport: 'udp', fields: [],
	biflow: false, observation_domain: BigInt(0), template_refresh_seconds: BigInt(60),
	template_refresh_packets: BigInt(20), stats_interval: BigInt(0), mtu: BigInt(1400),
	source_address: '', group: '', queue_limit: BigInt(256), spool_kb: BigInt(0) };

/* export/collectors.py CollectorProfile.__post_init__ */
function checkProfile(v) {
	function check(field, ok, allowed, value) {
		if (!ok)
			throw new FieldError(field, arguments.length > 3 ? value : v[field], allowed);
	}
	var protocols = [ 'ipfix', 'netflow9', 'netflow5' ];
	check('protocol', protocols.indexOf(v.protocol) >= 0, protocols.join(' or '));
	check('transport', [ 'udp', 'tcp' ].indexOf(v.transport) >= 0, 'udp or tcp');
	check('transport', v.transport == 'udp' || v.protocol == 'ipfix',
		'udp (tcp is for ipfix only)');
	check('host', typeof(v.host) == 'string' && v.host != '', 'an address or host name');
	check('port', intIn(v.port, 0, 65535), '1 to 65535');
	check('biflow', !v.biflow || v.protocol == 'ipfix',
		'false (RFC 5103 biflows are IPFIX only)');
	check('observation_domain', intIn(v.observation_domain, 0, 4294967295), '0 to 4294967295');
	check('template_refresh_seconds', intIn(v.template_refresh_seconds, 1, 86400), '1 to 86400');
	check('template_refresh_packets', intIn(v.template_refresh_packets, 1, 100000),
		'1 to 100000');
	check('stats_interval', intIn(v.stats_interval, 0, 86400), '0 (off) to 86400');
	check('mtu', intIn(v.mtu, 256, 65000), '256 to 65000');
	check('queue_limit', intIn(v.queue_limit, 1, 1000000), '1 to 1000000');
	check('spool_kb', intIn(v.spool_kb, 0, 4194304), '0 (off) to 4194304');
	if (v.fields.length) {
		check('fields', v.protocol != 'netflow5', 'none (the NetFlow v5 record is fixed)');
		v.fields.forEach(function(name) {
			if (!ELEMENT.hasOwnProperty(name))
				check('fields', false, 'names from: ' + ELEMENT_NAMES_SORTED.join(' '), name);
			if (v.protocol == 'netflow9' && !ELEMENT[name].v9)
				check('fields', false, 'elements NetFlow v9 can carry', name);
			if (ELEMENT[name].reverse && !v.biflow)
				check('fields', false, 'reverse elements with biflow only', name);
		});
	}
}

/* config.py _checked(): a field's error said in the file's terms */
function checked(fn, label, spec, origin, values) {
	try {
		fn(values);
	}
	catch (e) {
		if (!(e instanceof FieldError))
			throw e;
		var known = origin[e.field], option, raw = null;
		if (known) {
			option = known[0];
			raw = known[1];
		}
		else {
			option = e.field;
			for (var o in spec)
				if (spec[o][0] == e.field) { option = o; break; }
		}
		var value = (typeof(e.value) == 'string' || raw == null) ? e.value : raw;
		throw new Problem(label, option, value, e.allowed);
	}
}

/* config.py _options(): field -> value, field -> [option, raw]; unknown options skipped */
function readOptions(section, spec) {
	var values = {}, origin = {};
	for (var option in section.options) {
		if (!spec.hasOwnProperty(option))
			continue;   /* the daemon warns about it and goes on */
		var raw = section.options[option], field = spec[option][0];
		if (origin.hasOwnProperty(field))
			throw new Problem(section.label, option, raw, null,
				'also given as ' + origin[field][0] + ' (allowed: one of them)');
		origin[field] = [ option, raw ];
		values[field] = convert(section.label, option, raw, spec[option][1]);
	}
	return [ values, origin ];
}

function pick(values, spec) {
	var out = {};
	for (var option in spec)
		if (values.hasOwnProperty(spec[option][0]))
			out[spec[option][0]] = values[spec[option][0]];
	return out;
}

function buildInterfaces(main, values, origin, sections) {
	var template = Object.assign({}, INTERFACE_DEFAULTS, pick(values, CAPTURE_OPTIONS),
	                             { name: 'any' });
	checked(checkInterface, main.label, MAIN_OPTIONS, origin, template);
	var names = values.interfaces || [];
	names.forEach(function(name, position) {
		var again = names.slice(0, position).indexOf(name) >= 0;
		if (!isDeviceName(name) || again)
			throw new Problem(main.label, origin.interfaces[0], name,
				again ? 'each interface once' : DEVICE_NAME_ALLOWED);
	});
	var overrides = {};
	sections.forEach(function(section) {
		var target = section.options.hasOwnProperty('name') ? section.options.name : section.name;
		if (Array.isArray(target) || names.indexOf(target) < 0)
			return;   /* warned about and ignored */
		if (overrides.hasOwnProperty(target))
			throw new Problem(section.label, null, null, null,
				'a second section for interface ' + pyRepr(target) + ' (allowed: one; flowprobe.' +
				overrides[target].label + ' is for it)');
		overrides[target] = section;
	});
	names.forEach(function(name) {
		var section = overrides[name];
		if (!section)
			return;
		var own = readOptions(section, INTERFACE_OPTIONS);
		delete own[0].name;
		checked(checkInterface, section.label, INTERFACE_OPTIONS, own[1],
			Object.assign({}, template, own[0], { name: name }));
	});
}

function buildCollector(section) {
	var own = readOptions(section, COLLECTOR_OPTIONS), values = own[0], origin = own[1];
	delete values.enabled;
	function invalid(field, allowed) {
		return new Problem(section.label, origin[field][0], origin[field][1], allowed);
	}
	if (!values.hasOwnProperty('host'))
		throw new Problem(section.label, 'host', null, HOST_ALLOWED,
			'missing (required: ' + HOST_ALLOWED + ')');
	if (!isHost(values.host))
		throw invalid('host', HOST_ALLOWED);
	if (values.hasOwnProperty('source_address') && !isIPAddress(values.source_address))
		throw invalid('source_address', 'an IPv4 or IPv6 address of this host, or empty');
	if (values.hasOwnProperty('group') && !GROUP.test(values.group))
		throw invalid('group', "a name of at most 64 letters, digits, '_', '.' or '-'");
	checked(checkProfile, section.label, COLLECTOR_OPTIONS, origin,
		Object.assign({}, COLLECTOR_DEFAULTS, values));
}

/* config.py build(): the first error the daemon would report, or null */
function checkSections(sections) {
	var counts = {}, byType = { flowprobe: [], 'interface': [], collector: [] };
	sections = sections.map(function(s) {
		var index = counts[s.type] || 0, options = {};
		counts[s.type] = index + 1;
		for (var o in s.options)   /* option x '' sets nothing (libuci) */
			if (!(s.options[o] === '' || s.options[o] == null))
				options[o] = s.options[o];
		return { type: s.type, name: s.name, options: options,
		         label: s.name != null ? s.name : '@' + s.type + '[' + index + ']' };
	});
	sections.forEach(function(s) { if (byType[s.type]) byType[s.type].push(s) });
	try {
		var mains = byType.flowprobe;
		if (!mains.length)
			throw new Problem('main', null, null, null, "missing (add: config flowprobe 'main')");
		if (mains.length > 1)
			throw new Problem(mains[1].label, null, null, null,
				'a second flowprobe section (allowed: one; flowprobe.' + mains[0].label +
				' is the first)');
		var main = mains[0], own = readOptions(main, MAIN_OPTIONS),
		    values = own[0], origin = own[1];
		checked(checkMeter, main.label, MAIN_OPTIONS, origin,
			Object.assign({}, METER_DEFAULTS, pick(values, METER_OPTIONS)));
		buildInterfaces(main, values, origin, byType['interface']);
		byType.collector.forEach(buildCollector);
		var enabled = values.hasOwnProperty('enabled') ? values.enabled : false,
		    conntrack = Object.assign({ source: 'capture', conntrack_max_connections: BigInt(16384),
		    	conntrack_dump_interval: 30, conntrack_vanish_grace: 5,
		    	conntrack_buffer_kb: BigInt(1024) }, pick(values, CONNTRACK_OPTIONS));
		checked(function(v) {
			if ([ 'capture', 'conntrack', 'both' ].indexOf(v.source) < 0)
				throw new FieldError('source', v.source, 'capture, conntrack, both');
			checkInt('conntrack_max_connections', v.conntrack_max_connections, 1, 16777216);
			checkSeconds('conntrack_dump_interval', v.conntrack_dump_interval, 1);
			checkSeconds('conntrack_vanish_grace', v.conntrack_vanish_grace, 0);
			checkInt('conntrack_buffer_kb', v.conntrack_buffer_kb, 0, 1048576);
		}, main.label, MAIN_OPTIONS, origin, conntrack);
		var captures = conntrack.source != 'conntrack';
		if (enabled && captures && !(values.interfaces || []).length)
			throw new Problem(main.label, 'interface', null, null,
				"missing (required when enabled: at least one, as list interface 'lan')");
		checked(function(v) {
			if ([ 'debug', 'info', 'warning', 'error' ].indexOf(v.log_level) < 0)
				throw new FieldError('log_level', v.log_level, 'debug, info, warning, error');
			var path = v.control_socket;
			if (typeof(path) != 'string' || path.charAt(0) != '/' || path.indexOf('\0') >= 0 ||
			    utf8Length(path) > SUN_PATH_MAX)
				throw new FieldError('control_socket', path,
					'an absolute path of at most ' + SUN_PATH_MAX + ' bytes');
			if (v.user && !USER_NAME.test(v.user))
				throw new FieldError('user', v.user, USER_NAME_ALLOWED);
			if (typeof(v.spool_dir) != 'string' || v.spool_dir.charAt(0) != '/' ||
			    v.spool_dir.indexOf('\0') >= 0)
				throw new FieldError('spool_dir', v.spool_dir, 'an absolute path');
		}, main.label, MAIN_OPTIONS, origin, {
			log_level: values.hasOwnProperty('log_level') ? values.log_level : 'info',
			control_socket: values.hasOwnProperty('control_socket')
				? values.control_socket : '/var/run/flowprobe.sock',
			user: values.hasOwnProperty('user') ? values.user : '',
			spool_dir: values.hasOwnProperty('spool_dir') ? values.spool_dir : '/var/spool/flowprobe'
		});
	}
	catch (e) {
		if (e instanceof Problem)
			return e;
		throw e;
	}
	return null;
}

return baseclass.extend({
	/* [ name, NetFlow v9 can carry it, reverse element ] */
	elements: ELEMENTS,

	/**
	 * The whole configuration as the daemon would load it.
	 * sections: [ { type, name (null: anonymous), options: { option: string | [string] } } ]
	 * Returns null, or the daemon's error text
	 * ("flowprobe.main.idle_timeout: invalid value 'soon' (allowed: ...)").
	 */
	checkConfig: function(sections) {
		var problem = checkSections(sections);
		return problem ? problem.toString() : null;
	},

	/**
	 * One option of one section, with the other options of that section as
	 * the form holds them (protocol, biflow and transport depend on each
	 * other). Returns true, or the daemon's error for that option.
	 */
	checkOption: function(type, name, option, value, siblings) {
		var options = Object.assign({}, siblings || {});
		options[option] = value;
		var sections = [ { type: 'flowprobe', name: 'main', options: {} } ];
		if (type == 'flowprobe')
			sections[0].options = options;
		else {
			if (type == 'collector' && (options.host == null || options.host === ''))
				options.host = option == 'host' ? options.host : '192.0.2.1';
			sections.push({ type: type, name: name, options: options });
		}
		/* a sibling's own error would hide this option's: leave such siblings out */
		for (;;) {
			var problem = checkSections(sections);
			if (!problem || problem.option == option)
				return problem ? problem.toString() : true;
			var holder = sections[sections.length - 1].options;
			if (problem.option == null || !holder.hasOwnProperty(problem.option))
				return true;
			delete holder[problem.option];
			if (problem.option == 'host' && type == 'collector')
				holder.host = '192.0.2.1';
		}
	},

	isDeviceName: isDeviceName,
	isHost: isHost,
	pyRepr: pyRepr
});
