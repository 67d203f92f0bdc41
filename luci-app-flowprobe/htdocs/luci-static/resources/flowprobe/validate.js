'use strict';
'require baseclass';
'require flowprobe.schema as schema';

/*
 * The daemon's checks of /etc/config/flowprobe (src/flowprobe/config.py,
 * settings.py, export/collectors.py), in the browser: the settings form
 * refuses what the daemon would refuse, with the daemon's own words, and the
 * status page can say why a stopped service will not start.
 *
 * tests/test_luci_validation.py runs these functions in node over a table of
 * values and whole configs and compares every verdict and message with
 * config.py's, so a change on one side without the other fails there.
 *
 * What is data comes from the daemon, generated into flowprobe/schema.js:
 * the options of each section, what each field may hold and the words for
 * it, the defaults, the IPFIX elements.  What is logic (host names, device
 * names, the order of the checks) is written here, after the daemon's.
 */

var S = schema.data;


var TRUE_WORDS = [ '1', 'yes', 'on', 'true', 'enabled' ],
    FALSE_WORDS = [ '0', 'no', 'off', 'false', 'disabled' ],
    BOOLEAN_ALLOWED = '1 or 0 (also yes/no, on/off, true/false, enabled/disabled)',
    DEVICE_NAME_ALLOWED = "an interface name: 1 to 15 characters, no spaces, '/' or ':'",
    HOST_ALLOWED = 'an IPv4 or IPv6 address or a host name',
    USER_NAME_ALLOWED = 'a user name: a letter or _, then up to 31 letters, digits, _ . or -',
    SUN_PATH_MAX = 107,
    INTEGER_TEXT = /^[0-9]+$/,
    SECONDS_TEXT = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/,
    RATE_TEXT = /^(?:1:)?[0-9]+$/,
    GROUP = /^[A-Za-z0-9_.-]{1,64}$/,
    USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/,
    HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/* IPFIX elements a collector's field list may name: [name, NetFlow v9 can
 * carry it, reverse (RFC 5103) element]; export/fields.py's ELEMENTS. */
var ELEMENTS = S.elements;
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
var RATE = 'rate';   /* '1:N' (or N): the N */

function optionGroup(name) {
	var out = {};
	S.groups[name].forEach(function(option) { out[option] = S.options.flowprobe[option] });
	return out;
}

var METER_OPTIONS = optionGroup('meter'), CAPTURE_OPTIONS = optionGroup('capture'),
    CONNTRACK_OPTIONS = optionGroup('conntrack'),
    MAIN_OPTIONS = S.options.flowprobe, INTERFACE_OPTIONS = S.options['interface'],
    COLLECTOR_OPTIONS = S.options.collector, SECTION_TYPES = S.options;

/* a default as the form holds it: integers as BigInt */
function defaultsOf(name) {
	var out = {}, given = S.defaults[name];
	for (var field in given) {
		var v = given[field];
		out[field] = (v && typeof(v) == 'object' && !Array.isArray(v)) ? BigInt(v['int']) : v;
	}
	return out;
}

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
	if (kind == RATE && RATE_TEXT.test(raw))
		return BigInt(raw.split(':').pop());
	return raw;   /* text that is no number: the field's own check says what it allows */
}

/* schema.py check(): what a field may hold, in the daemon's words */
function checkField(field, value) {
	var rule = S.fields[field], ok;
	if (rule.kind == 'integer')
		ok = intIn(value, rule.low, rule.high) || (rule.words || []).indexOf(value) >= 0;
	else if (rule.kind == 'seconds')
		ok = (typeof(value) == 'number' || isInteger(value)) &&
			Number(value) >= rule.low && Number(value) <= rule.high;
	else
		ok = rule.values.indexOf(value) >= 0;
	if (!ok)
		throw new FieldError(field, value, rule.allowed);
}

function checkFields(v, fields) {
	fields.forEach(function(field) { checkField(field, v[field]) });
}

/* settings.py MeterSettings.__post_init__ */
function checkMeter(v) {
	checkFields(v, [ 'max_flows', 'max_fragments', 'idle_timeout', 'active_timeout',
		'unanswered_timeout', 'fragment_timeout', 'tcp_end_grace', 'overflow_policy' ]);
	checkField('hash_seed', v.hash_seed);
	checkField('max_flows_ipv6', v.max_flows_ipv6);
	if (isInteger(v.max_flows_ipv6) && isInteger(v.max_flows) && v.max_flows_ipv6 > v.max_flows)
		throw new FieldError('max_flows_ipv6', v.max_flows_ipv6,
			'at most max_flows (' + v.max_flows + '), or auto');
}

var METER_DEFAULTS = defaultsOf('meter'), INTERFACE_DEFAULTS = defaultsOf('interface');

/* config.py InterfaceConfig.__post_init__ */
function checkInterface(v) {
	[ 'name', 'device' ].forEach(function(field) {
		if (!(field == 'device' && v[field] === '') && !isDeviceName(v[field]))
			throw new FieldError(field, v[field], DEVICE_NAME_ALLOWED);
	});
	if (typeof(v.bpf_filter) != 'string' || hasControlCharacters(v.bpf_filter))
		throw new FieldError('bpf_filter', v.bpf_filter,
			'a libpcap filter expression (no control characters)');
	checkFields(v, [ 'direction', 'snaplen', 'buffer_kb', 'sampling', 'sampling_algorithm',
		'tunnels' ]);
}

var COLLECTOR_DEFAULTS = defaultsOf('collector');

/* export/collectors.py CollectorProfile.__post_init__ */
function checkProfile(v) {
	function check(field, ok, allowed, value) {
		if (!ok)
			throw new FieldError(field, arguments.length > 3 ? value : v[field], allowed);
	}
	checkFields(v, [ 'protocol', 'transport' ]);
	check('transport', v.transport == 'udp' || v.protocol == 'ipfix',
		'udp (tcp is for ipfix only)');
	check('host', typeof(v.host) == 'string' && v.host != '', 'an address or host name');
	checkField('port', v.port);
	check('biflow', !v.biflow || v.protocol == 'ipfix',
		'false (RFC 5103 biflows are IPFIX only)');
	checkFields(v, [ 'observation_domain', 'template_refresh_seconds',
		'template_refresh_packets', 'stats_interval', 'mtu', 'queue_limit', 'spool_kb',
		'counter_interval' ]);
	if (v.protocol == 'sflow') {
		check('fields', !v.fields.length, 'none (sFlow sends packet headers, not flow records)');
		check('group', !v.group, 'none (every sFlow collector gets every sample)');
	}
	if (v.fields.length && v.protocol != 'sflow') {
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

/* the interfaces' values, for config.py _check_sampling() */
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
	return names.map(function(name) {
		var section = overrides[name];
		if (!section)
			return Object.assign({}, template, { name: name });
		var own = readOptions(section, INTERFACE_OPTIONS);
		delete own[0].name;
		var v = Object.assign({}, template, own[0], { name: name });
		checked(checkInterface, section.label, INTERFACE_OPTIONS, own[1], v);
		return v;
	});
}

/* config.py _check_sampling(): flow collectors scale every record by one interval */
function checkSampling(main, interfaces, collectors, conntrack) {
	if (!collectors.some(function(c) { return c.protocol != 'sflow' }))
		return;
	var rates = [];
	interfaces.forEach(function(i) {
		if (!rates.some(function(r) { return r == i.sampling }))
			rates.push(i.sampling);
	});
	rates.sort(function(a, b) { return a < b ? -1 : (a > b ? 1 : 0) });
	if (rates.length > 1)
		throw new Problem(main.label, 'sampling', null, null, 'differs between interfaces (1:' +
			rates[0] + ' and 1:' + rates[1] + '; allowed: one rate for all while an IPFIX or ' +
			'NetFlow collector is configured, as collectors scale every record by one interval)');
	if (rates.length && rates[0] > 1n && conntrack.source != 'capture')
		throw new Problem(main.label, 'sampling', null, null, '1:' + rates[0] + " with source '" +
			conntrack.source + "' (allowed: 1:1 with conntrack, whose records are whole: a " +
			'collector would scale them too)');
}

/* the profile's values, or null when it is not enabled */
function buildCollector(section) {
	var own = readOptions(section, COLLECTOR_OPTIONS), values = own[0], origin = own[1],
	    enabled = values.hasOwnProperty('enabled') ? values.enabled : true;
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
	var profile = Object.assign({}, COLLECTOR_DEFAULTS, values);
	checked(checkProfile, section.label, COLLECTOR_OPTIONS, origin, profile);
	return enabled ? profile : null;
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
		var interfaces = buildInterfaces(main, values, origin, byType['interface']);
		var collectors = byType.collector.map(buildCollector).filter(function(c) { return c });
		var enabled = values.hasOwnProperty('enabled') ? values.enabled : false,
		    conntrack = Object.assign(defaultsOf('conntrack'), pick(values, CONNTRACK_OPTIONS));
		checked(function(v) {
			checkFields(v, [ 'source', 'conntrack_max_connections', 'conntrack_dump_interval',
				'conntrack_vanish_grace', 'conntrack_buffer_kb' ]);
		}, main.label, MAIN_OPTIONS, origin, conntrack);
		var captures = conntrack.source != 'conntrack';
		checkSampling(main, captures ? interfaces : [], collectors, conntrack);
		if (enabled && captures && !(values.interfaces || []).length)
			throw new Problem(main.label, 'interface', null, null,
				"missing (required when enabled: at least one, as list interface 'lan')");
		checked(function(v) {   /* the enrichment stage (enrich/settings.py) */
			[ 'routing', 'devices' ].forEach(function(name) {
				if (typeof(v[name]) != 'boolean')
					throw new FieldError(name, v[name], 'true or false');
			});
			[ 'lease_file', 'dhcpv6_lease_file' ].forEach(function(name) {
				var path = v[name];
				if (typeof(path) != 'string' || path.charAt(0) != '/' || path.indexOf('\0') >= 0)
					throw new FieldError(name, path, 'an absolute path');
			});
			var prefixes = v.prefix_file;
			if (typeof(prefixes) != 'string' || prefixes.indexOf('\0') >= 0 ||
			    (prefixes != '' && prefixes.charAt(0) != '/'))
				throw new FieldError('prefix_file', prefixes, 'an absolute path, or empty');
			checkFields(v, [ 'route_cache', 'route_wait', 'max_prefixes' ]);
		}, main.label, MAIN_OPTIONS, origin,
			Object.assign(defaultsOf('enrich'), pick(values, optionGroup('enrich'))));
		checked(function(v) {
			checkField('log_level', v.log_level);
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
		}, main.label, MAIN_OPTIONS, origin,
			Object.assign(defaultsOf('main'), pick(values, {
				log_level: [ 'log_level' ], control_socket: [ 'control_socket' ],
				user: [ 'user' ], spool_dir: [ 'spool_dir' ] })));
		/* the history store's options (config.py Config.__post_init__) */
		checked(function(v) {
			if (typeof(v.history_dir) != 'string' || v.history_dir.charAt(0) != '/' ||
			    v.history_dir.indexOf('\0') >= 0)
				throw new FieldError('history_dir', v.history_dir, 'an absolute path');
			checkFields(v, [ 'history_kb', 'history_flush' ]);
		}, main.label, MAIN_OPTIONS, origin,
			Object.assign(defaultsOf('main'), pick(values, {
				history_dir: [ 'history_dir' ], history_kb: [ 'history_kb' ],
				history_flush: [ 'history_flush' ] })));
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
