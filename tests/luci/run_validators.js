// Runs luci-app-flowprobe's validators (flowprobe/validate.js) in node, loaded
// as LuCI loads a module: its 'require lines become arguments of a function
// around its source. Stand-in: baseclass is a minimal class factory, the only
// LuCI module validate.js requires.
//
// stdin: {"options": [[type, name, option, value, siblings], ...], "configs": [[sections], ...]}
// stdout: {"options": [true | "error", ...], "configs": [null | "error", ...]}
'use strict';
const fs = require('fs');
const path = require('path');

const ROOT = path.join(__dirname, '..', '..', 'luci-app-flowprobe', 'htdocs', 'luci-static',
	'resources');

const baseclass = { extend: (props) => { function Class() {} Class.prototype = props; return Class; } };

function loadModule(name) {
	const source = fs.readFileSync(path.join(ROOT, name.replace(/\./g, '/') + '.js'), 'utf8');
	const requires = [], modules = [];
	const pattern = /^'require[ \t]+(\S+)(?:[ \t]+as[ \t]+([a-zA-Z_]\S*))?';$/gm;
	let match;
	while ((match = pattern.exec(source)) !== null) {
		requires.push(match[2] || match[1].replace(/.*\./, ''));
		modules.push(match[1]);
	}
	const known = { baseclass };
	const args = requires.map((alias, i) => {
		if (modules[i].startsWith('flowprobe.')) return loadModule(modules[i]);   // the app's own
		if (!(alias in known)) throw new Error(`${name} requires ${alias}: not in this harness`);
		return known[alias];
	});
	const factory = new Function('window', 'document', 'L', ...requires, source);
	const Class = factory(globalThis, undefined, {}, ...args);
	return new Class();
}

const validate = loadModule('flowprobe.validate');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const output = {
	options: (input.options || []).map(([type, name, option, value, siblings]) =>
		validate.checkOption(type, name, option, value, siblings)),
	configs: (input.configs || []).map((sections) => validate.checkConfig(sections)),
	elements: validate.elements,
};
process.stdout.write(JSON.stringify(output));
