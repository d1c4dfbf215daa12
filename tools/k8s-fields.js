'use strict';
/*
 * Unknown-field check ("kubectl --validate=strict", offline).
 *
 * The kubernetes-models validators check types, enums and required fields
 * but accept any extra key, so a typo such as `readinesProbe` or
 * `targetport` would pass unnoticed. The same packages ship TypeScript
 * declarations that list every field of every API type; this module reads
 * those declarations and reports each key of an object that its type does
 * not declare.
 *
 * Only the small part of TypeScript that the generated declarations use is
 * understood: interfaces, inline object types, index signatures,
 * Array<...>, unions, literals and imported names.
 */
const fs = require('fs');
const path = require('path');

const NODE_MODULES = path.join(__dirname, 'node_modules');
const fileCache = new Map();

function stripComments(s) {
  return s.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

// Index of the bracket closing the one at s[open].
function closing(s, open) {
  const pairs = { '{': '}', '<': '>', '(': ')', '[': ']' };
  const stack = [];
  let str = null;
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (str) {
      if (c === '\\') i++;
      else if (c === str) str = null;
      continue;
    }
    if (c === '"' || c === "'") str = c;
    else if (pairs[c]) stack.push(pairs[c]);
    else if (c === stack[stack.length - 1]) {
      stack.pop();
      if (!stack.length) return i;
    }
  }
  throw new Error('unbalanced brackets in a declaration');
}

// Split at top-level occurrences of `sep` (outside brackets and strings).
function splitTop(s, sep) {
  const out = [];
  let depth = 0, start = 0, str = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (str) {
      if (c === '\\') i++;
      else if (c === str) str = null;
      continue;
    }
    if (c === '"' || c === "'") str = c;
    else if ('{<(['.includes(c)) depth++;
    else if ('}>)]'.includes(c) && !(c === '>' && s[i - 1] === '=')) depth--;
    else if (c === sep && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out.map((x) => x.trim()).filter((x) => x.length);
}

function loadFile(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const src = stripComments(fs.readFileSync(file, 'utf8'));
  const info = { file, dir: path.dirname(file), imports: new Map(),
    interfaces: new Map(), types: new Map(), aliases: new Map() };
  for (const m of src.matchAll(
    /import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const part of m[1].split(',')) {
      const p = part.trim();
      if (!p) continue;
      const [orig, local] = p.split(/\s+as\s+/).map((x) => x.trim());
      info.imports.set(local || orig, { spec: m[2], name: orig });
    }
  }
  for (const m of src.matchAll(
    /export\s+interface\s+(\w+)(?:\s+extends\s+[^{]+)?\s*\{/g)) {
    const open = m.index + m[0].length - 1;
    info.interfaces.set(m[1], src.slice(open, closing(src, open) + 1));
  }
  for (const m of src.matchAll(/export\s+type\s+(\w+)\s*=\s*/g)) {
    const start = m.index + m[0].length;
    let end = start, depth = 0;
    for (; end < src.length; end++) {
      const c = src[end];
      if ('{<(['.includes(c)) depth++;
      else if ('}>)]'.includes(c)) depth--;
      else if (c === ';' && depth === 0) break;
    }
    info.types.set(m[1], src.slice(start, end));
  }
  for (const m of src.matchAll(/export\s*\{([^}]*)\}/g)) {
    for (const part of m[1].split(',')) {
      const [orig, alias] = part.trim().split(/\s+as\s+/);
      if (alias) info.aliases.set(alias.trim(), orig.trim());
    }
  }
  fileCache.set(file, info);
  return info;
}

function resolveModule(fromDir, spec) {
  const base = spec.startsWith('.') ? path.resolve(fromDir, spec)
    : path.join(NODE_MODULES, spec);
  for (const cand of [base + '.d.ts', path.join(base, 'index.d.ts')])
    if (fs.existsSync(cand)) return cand;
  return null;
}

// Parse a type expression into a node:
//   {obj: {field: {type, ctx}}} | {map: node} | {array: node} |
//   {union: [node]} | {ref: name, ctx} | {leaf: true}
function parseType(text, ctx) {
  const t = text.trim();
  const alts = splitTop(t, '|');
  if (alts.length > 1)
    return { union: alts.map((a) => parseType(a, ctx)) };
  let m = /^Array<([\s\S]*)>$/.exec(t);
  if (m) return { array: parseType(m[1], ctx) };
  if (t.endsWith('[]') && !t.endsWith('"]'))
    return { array: parseType(t.slice(0, -2), ctx) };
  if (t.startsWith('{')) return parseObject(t, ctx);
  if (t.startsWith('(') && t.endsWith(')'))
    return parseType(t.slice(1, -1), ctx);
  if (/^\w+$/.test(t) && !['string', 'number', 'boolean', 'any', 'unknown',
    'null', 'undefined', 'object', 'never'].includes(t))
    return { ref: t, ctx };
  return { leaf: true };
}

function parseObject(text, ctx) {
  const body = text.trim().slice(1, -1);
  const fields = {};
  let index = null;
  for (const member of splitTop(body, ';')) {
    let m = /^\[\s*\w+\s*:\s*string\s*\]\s*:\s*([\s\S]*)$/.exec(member);
    if (m) {
      index = parseType(m[1], ctx);
      continue;
    }
    m = /^(?:readonly\s+)?(?:"([^"]+)"|(\w+))\??\s*:\s*([\s\S]*)$/.exec(member);
    if (!m) continue;
    fields[m[1] || m[2]] = { text: m[3], ctx };
  }
  if (index && !Object.keys(fields).length) return { map: index };
  return { obj: fields, index };
}

function resolveRef(name, ctx, depth) {
  if (depth > 20) return { leaf: true };
  if (ctx.interfaces.has(name))
    return parseType(ctx.interfaces.get(name), ctx);
  if (ctx.types.has(name)) return parseType(ctx.types.get(name), ctx);
  if (ctx.aliases.has(name)) return resolveRef(ctx.aliases.get(name), ctx,
    depth + 1);
  const imp = ctx.imports.get(name);
  if (imp) {
    const file = resolveModule(ctx.dir, imp.spec);
    if (!file) return { leaf: true };
    return resolveRef(imp.name, loadFile(file), depth + 1);
  }
  return { leaf: true }; // a global (TypeMeta, ...): nothing to check
}

function deref(node) {
  let n = node, guard = 0;
  while (n.ref && guard++ < 20) n = resolveRef(n.ref, n.ctx, 0);
  return n;
}

function isObj(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function walk(value, node, where, errs) {
  node = deref(node);
  if (node.union) {
    const want = isObj(value) ? (n) => n.obj || n.map
      : Array.isArray(value) ? (n) => n.array : null;
    if (!want) return;
    const branch = node.union.map(deref).find(want);
    if (branch) walk(value, branch, where, errs);
    return;
  }
  if (node.array) {
    if (Array.isArray(value))
      value.forEach((v, i) => walk(v, node.array, `${where}[${i}]`, errs));
    return;
  }
  if (node.map) {
    if (isObj(value))
      for (const [k, v] of Object.entries(value))
        walk(v, node.map, `${where}.${k}`, errs);
    return;
  }
  if (node.obj) {
    if (!isObj(value)) return;
    for (const [k, v] of Object.entries(value)) {
      const f = node.obj[k];
      if (f) walk(v, parseType(f.text, f.ctx), `${where}.${k}`, errs);
      else if (node.index) walk(v, node.index, `${where}.${k}`, errs);
      else errs.push(`${where ? where.slice(1) + '.' : ''}${k}: unknown field`);
    }
  }
}

/**
 * Unknown fields of @p obj against the interface declared in the .d.ts
 * @p dtsFile (the first exported interface). Returns a list of messages.
 */
function unknownFields(obj, dtsFile) {
  const info = loadFile(dtsFile);
  const first = info.interfaces.keys().next();
  if (first.done) throw new Error(`${dtsFile}: no interface`);
  const errs = [];
  walk(obj, { ref: first.value, ctx: info }, '', errs);
  return errs;
}

module.exports = { unknownFields };
