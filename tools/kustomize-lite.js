'use strict';
/*
 * kustomize-lite: renders a kustomization offline, for `make lint-deploy`.
 *
 * Kustomize itself is a Go program; neither Debian bookworm (kubectl 1.20
 * there embeds kustomize 2.0, which predates `labels` and `patches`) nor an
 * npm package that does not download a binary at install time provides
 * it, so this file implements the subset deploy/k8s uses, with the same
 * semantics:
 *
 *   resources              files (multi-document YAML) and directories
 *                          holding a kustomization (built recursively)
 *   namespace              set on every namespaced object
 *   labels                 pairs, includeSelectors, includeTemplates
 *   commonLabels           metadata, selectors and pod templates
 *   configMapGenerator     files (key=path or path), literals, behavior
 *                          create|replace|merge, options; content hash
 *                          suffix (kustomize's algorithm) and name
 *                          references rewritten in pod specs
 *   generatorOptions       disableNameSuffixHash, labels, annotations
 *   images                 newName, newTag, digest on pod templates
 *   patches / patchesStrategicMerge
 *                          strategic merge patches (path or inline,
 *                          optional target), list merge keys of the pod
 *                          spec (kustomize's order: patch items first);
 *                          "$patch: delete" on list items and maps
 *
 * YAML scalars are read as kustomize reads them (YAML 1.2 core schema,
 * plus 0-prefixed octal ints such as defaultMode: 0440).
 *
 * Anything else in a kustomization is an error, never silently ignored.
 * tests/integration/test_lint_deploy.sh compares the output with
 * `kubectl kustomize` where kubectl is installed.
 */
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const YAML = require('yaml');

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml',
  'Kustomization'];
const SUPPORTED_KEYS = new Set(['apiVersion', 'kind', 'resources',
  'namespace', 'labels', 'commonLabels', 'configMapGenerator',
  'generatorOptions', 'images', 'patches', 'patchesStrategicMerge']);

// Kinds that have no namespace (the ones a deployment might plausibly hold).
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole',
  'ClusterRoleBinding', 'CustomResourceDefinition', 'PersistentVolume',
  'StorageClass', 'PriorityClass', 'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration', 'APIService', 'IngressClass',
  'RuntimeClass']);

// Pod template locations per workload kind.
const POD_TEMPLATE = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

// Strategic-merge keys of the lists deploy/k8s may patch.
const MERGE_KEYS = {
  containers: 'name', initContainers: 'name', ephemeralContainers: 'name',
  volumes: 'name', volumeMounts: 'mountPath', volumeDevices: 'devicePath',
  env: 'name', ports: 'containerPort', imagePullSecrets: 'name',
  tolerations: null, topologySpreadConstraints: 'topologyKey',
  hostAliases: 'ip',
};

class KustomizeError extends Error {}

function fail(msg) {
  throw new KustomizeError(msg);
}

function isObj(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function clone(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function getPath(obj, p) {
  let cur = obj;
  for (const k of p) {
    if (!isObj(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

// Make sure obj[p...] is an object and return it.
function ensurePath(obj, p) {
  let cur = obj;
  for (const k of p) {
    if (!isObj(cur[k])) cur[k] = {};
    cur = cur[k];
  }
  return cur;
}

// Scalars as kustomize (go-yaml v3) reads them: the YAML 1.2 core schema
// (yes/no/y/n are strings), plus the legacy octal ints (defaultMode: 0440
// is 288).
const LEGACY_OCTAL = { identify: (v) => Number.isInteger(v), default: true,
  tag: 'tag:yaml.org,2002:int', test: /^0[0-7]+$/,
  resolve: (str) => parseInt(str, 8) };
const YAML_OPTS = { version: '1.2', schema: 'core', prettyErrors: true,
  customTags: (tags) => [LEGACY_OCTAL, ...tags] };

function parseYamlDocs(text, origin) {
  const docs = YAML.parseAllDocuments(text, YAML_OPTS);
  const out = [];
  for (const d of docs) {
    if (d.errors && d.errors.length)
      fail(`${origin}: ${d.errors[0].message}`);
    const v = d.toJS({ maxAliasCount: 100 });
    if (v === null || v === undefined) continue;
    if (!isObj(v)) fail(`${origin}: a document is not a mapping`);
    out.push(v);
  }
  return out;
}

function readYamlDocs(file) {
  return parseYamlDocs(fs.readFileSync(file, 'utf8'), file);
}

function findKustomization(dir) {
  for (const f of KUSTOMIZATION_FILES) {
    const p = path.join(dir, f);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function resId(r) {
  const ns = (r.metadata && r.metadata.namespace) || '';
  return `${r.apiVersion || '?'} ${r.kind || '?'} ${ns}/` +
    `${(r.metadata && r.metadata.name) || '?'}`;
}

// ---- Go-compatible JSON (kustomize hashes json.Marshal output) -----------

function goString(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' ||
             c === 0x2028 || c === 0x2029)
      out += '\\u' + c.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + '"';
}

function goJson(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return goString(v);
  if (typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return '[' + v.map(goJson).join(',') + ']';
  const keys = Object.keys(v).sort();
  return '{' + keys.map((k) => goString(k) + ':' + goJson(v[k])).join(',') +
    '}';
}

// kustomize api/hasher: sha256 of the encoded object, first 10 hex digits
// with 0,1,3,a,e swapped for letters (no all-digit or vowel-made words).
// kustomize 5 hashes the generated object before it has a name, so the
// name in the encoding is empty (checked against kubectl kustomize).
function configMapHash(cm) {
  const m = { kind: 'ConfigMap', name: '', data: cm.data || {} };
  if (cm.immutable === true) m.immutable = true;
  if (cm.binaryData && Object.keys(cm.binaryData).length)
    m.binaryData = cm.binaryData;
  const hex = crypto.createHash('sha256').update(goJson(m)).digest('hex');
  const map = { 0: 'g', 1: 'h', 3: 'k', a: 'm', e: 't' };
  return hex.slice(0, 10).split('').map((c) => map[c] || c).join('');
}

// ---- transformers ---------------------------------------------------------

function addLabels(obj, pairs, where) {
  const labels = ensurePath(obj, where);
  for (const [k, v] of Object.entries(pairs)) labels[k] = String(v);
}

function addLabelsIfPresent(obj, where, pairs) {
  const cur = getPath(obj, where);
  if (isObj(cur)) for (const [k, v] of Object.entries(pairs)) cur[k] = String(v);
}

function applyLabels(resources, pairs, includeSelectors, includeTemplates) {
  for (const r of resources) {
    addLabels(r, pairs, ['metadata', 'labels']);
    const tpl = POD_TEMPLATE[r.kind];
    if (tpl && (includeSelectors || includeTemplates) && getPath(r, tpl))
      addLabels(r, pairs, [...tpl, 'metadata', 'labels']);
    if (!includeSelectors) continue;
    if (tpl && r.kind !== 'CronJob' && r.kind !== 'Job')
      addLabels(r, pairs, ['spec', 'selector', 'matchLabels']);
    if (r.kind === 'Service' || r.kind === 'ReplicationController')
      addLabels(r, pairs, ['spec', 'selector']);
    if (r.kind === 'PodDisruptionBudget')
      addLabelsIfPresent(r, ['spec', 'selector', 'matchLabels'], pairs);
    if (r.kind === 'NetworkPolicy') {
      addLabelsIfPresent(r, ['spec', 'podSelector', 'matchLabels'], pairs);
      for (const rule of getPath(r, ['spec', 'ingress']) || [])
        for (const peer of rule.from || [])
          addLabelsIfPresent(peer, ['podSelector', 'matchLabels'], pairs);
      for (const rule of getPath(r, ['spec', 'egress']) || [])
        for (const peer of rule.to || [])
          addLabelsIfPresent(peer, ['podSelector', 'matchLabels'], pairs);
    }
  }
}

function podSpecs(r) {
  const tpl = POD_TEMPLATE[r.kind];
  if (tpl) {
    const spec = getPath(r, [...tpl, 'spec']);
    return isObj(spec) ? [spec] : [];
  }
  if (r.kind === 'Pod' && isObj(r.spec)) return [r.spec];
  return [];
}

function splitImage(image) {
  let name = image, tag = null, digest = null;
  const at = name.indexOf('@');
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
  }
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > slash) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
  }
  return { name, tag, digest };
}

function applyImages(resources, images) {
  for (const img of images) {
    if (!img.name) fail('images: an entry has no name');
    for (const r of resources) {
      for (const spec of podSpecs(r)) {
        for (const c of [...(spec.initContainers || []),
          ...(spec.containers || [])]) {
          if (typeof c.image !== 'string') continue;
          const cur = splitImage(c.image);
          if (cur.name !== img.name) continue;
          let name = img.newName || cur.name;
          if (img.digest) name += '@' + img.digest;
          else if (img.newTag !== undefined) name += ':' + img.newTag;
          else if (cur.digest) name += '@' + cur.digest;
          else if (cur.tag) name += ':' + cur.tag;
          c.image = name;
        }
      }
    }
  }
}

function applyNamespace(resources, ns) {
  for (const r of resources) {
    if (CLUSTER_SCOPED.has(r.kind)) continue;
    ensurePath(r, ['metadata']).namespace = ns;
  }
}

// Strategic merge patch of plain maps and of the pod spec's keyed lists.
function smp(target, patch, key) {
  if (isObj(patch) && patch.$patch === 'delete') return undefined;
  if (isObj(patch) && patch.$patch === 'replace') {
    const p = clone(patch);
    delete p.$patch;
    return p;
  }
  if (isObj(patch)) {
    if (patch.$patch !== undefined)
      fail(`patch: unsupported $patch: ${patch.$patch}`);
    const out = isObj(target) ? target : {};
    for (const [k, v] of Object.entries(patch)) {
      if (k.startsWith('$')) fail(`patch: unsupported directive ${k}`);
      if (v === null) {
        delete out[k];
        continue;
      }
      const merged = smp(out[k], v, k);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
    return out;
  }
  if (Array.isArray(patch) && Object.prototype.hasOwnProperty.call(
    MERGE_KEYS, key) && MERGE_KEYS[key] && Array.isArray(target)) {
    // kustomize (kyaml) order: the patch's items first, in patch order,
    // merged into their namesakes; then the target's other items.
    const mk = MERGE_KEYS[key];
    const out = [];
    const inPatch = new Set();
    for (const item of patch) {
      if (!isObj(item) || item[mk] === undefined)
        fail(`patch: an item of ${key} has no ${mk}`);
      inPatch.add(item[mk]);
      if (item.$patch === 'delete') continue;
      const t = target.find((x) => isObj(x) && x[mk] === item[mk]);
      out.push(t ? smp(t, item, null) : smp(undefined, item, null));
    }
    for (const t of target)
      if (!(isObj(t) && inPatch.has(t[mk]))) out.push(t);
    return out;
  }
  return clone(patch);
}

function matchesTarget(r, t) {
  if (t.kind && t.kind !== r.kind) return false;
  if (t.name && t.name !== (r.metadata && r.metadata.name)) return false;
  if (t.namespace && t.namespace !== (r.metadata && r.metadata.namespace))
    return false;
  if (t.group !== undefined || t.version !== undefined) {
    const av = r.apiVersion || '';
    const [g, v] = av.includes('/') ? av.split('/') : ['', av];
    if (t.group !== undefined && t.group !== g) return false;
    if (t.version !== undefined && t.version !== v) return false;
  }
  if (t.labelSelector || t.annotationSelector)
    fail('patches: labelSelector/annotationSelector targets are not ' +
      'supported by kustomize-lite');
  return true;
}

function applyPatch(resources, patchDoc, target, origin) {
  if (!isObj(patchDoc)) fail(`${origin}: a patch must be a mapping`);
  if (Array.isArray(patchDoc) || patchDoc.op !== undefined)
    fail(`${origin}: JSON 6902 patches are not supported by kustomize-lite`);
  const t = target || { kind: patchDoc.kind,
    name: patchDoc.metadata && patchDoc.metadata.name };
  const hits = resources.filter((r) => matchesTarget(r, t));
  if (!hits.length)
    fail(`${origin}: patch target ${t.kind || '*'}/${t.name || '*'} ` +
      'not found');
  for (const r of hits) {
    const p = clone(patchDoc);
    if (target && isObj(p.metadata)) delete p.metadata.name;
    const merged = smp(r, p, null);
    if (merged !== r) Object.assign(r, merged);
  }
}

// ---- generators -------------------------------------------------------------

function generatorData(gen, dir, origin) {
  const data = {};
  for (const f of gen.files || []) {
    let key, file;
    const eq = f.indexOf('=');
    if (eq >= 0) {
      key = f.slice(0, eq);
      file = f.slice(eq + 1);
    } else {
      key = path.basename(f);
      file = f;
    }
    const full = path.resolve(dir, file);
    if (!fs.existsSync(full)) fail(`${origin}: file ${file} not found`);
    if (data[key] !== undefined) fail(`${origin}: duplicate key ${key}`);
    data[key] = fs.readFileSync(full, 'utf8');
  }
  for (const l of gen.literals || []) {
    const eq = l.indexOf('=');
    if (eq <= 0) fail(`${origin}: literal "${l}" is not key=value`);
    let v = l.slice(eq + 1);
    if (v.length >= 2 && ((v[0] === '"' && v[v.length - 1] === '"') ||
        (v[0] === "'" && v[v.length - 1] === "'")))
      v = v.slice(1, -1);
    data[l.slice(0, eq)] = v;
  }
  if (gen.envs || gen.env)
    fail(`${origin}: envs are not supported by kustomize-lite`);
  return data;
}

function runConfigMapGenerators(k, dir, resources, origin) {
  const gopts = k.generatorOptions || {};
  for (const gen of k.configMapGenerator || []) {
    if (!gen.name) fail(`${origin}: configMapGenerator entry without name`);
    const behavior = gen.behavior || 'create';
    const opts = gen.options || {};
    const data = generatorData(gen, dir, origin);
    const ns = gen.namespace;
    const existing = resources.find((r) => r.kind === 'ConfigMap' &&
      r.__generated && r.__generated.name === gen.name &&
      (!ns || r.metadata.namespace === ns));
    const noHash = !!(opts.disableNameSuffixHash ??
      gopts.disableNameSuffixHash);
    if (behavior === 'create') {
      if (existing) fail(`${origin}: ConfigMap ${gen.name} already exists`);
      const cm = { apiVersion: 'v1', kind: 'ConfigMap',
        metadata: { name: gen.name }, data };
      if (ns) cm.metadata.namespace = ns;
      for (const src of [gopts, opts]) {
        if (src.labels) addLabels(cm, src.labels, ['metadata', 'labels']);
        if (src.annotations)
          addLabels(cm, src.annotations, ['metadata', 'annotations']);
      }
      if (opts.immutable) cm.immutable = true;
      Object.defineProperty(cm, '__generated', { value: { name: gen.name,
        hash: !noHash }, enumerable: false, writable: true });
      resources.push(cm);
    } else if (behavior === 'replace' || behavior === 'merge') {
      if (!existing)
        fail(`${origin}: ConfigMap ${gen.name} to ${behavior} not found`);
      existing.data = behavior === 'replace' ? data
        : Object.assign(existing.data || {}, data);
      if (noHash) existing.__generated.hash = false;
      for (const src of [gopts, opts]) {
        if (src.labels) addLabels(existing, src.labels, ['metadata', 'labels']);
        if (src.annotations)
          addLabels(existing, src.annotations, ['metadata', 'annotations']);
      }
    } else {
      fail(`${origin}: configMapGenerator behavior "${behavior}" is unknown`);
    }
  }
}

// Rename generated ConfigMaps (hash suffix) and the pod spec references
// to them.
function finishGenerated(resources) {
  const renames = new Map(); // "ns/name" -> new name
  for (const r of resources) {
    if (!r.__generated || !r.__generated.hash) continue;
    const old = r.metadata.name;
    r.metadata.name = `${old}-${configMapHash(r)}`;
    renames.set(`${r.metadata.namespace || ''}/${old}`, r.metadata.name);
  }
  if (!renames.size) return;
  const ren = (ns, name) => renames.get(`${ns || ''}/${name}`);
  for (const r of resources) {
    const ns = r.metadata && r.metadata.namespace;
    for (const spec of podSpecs(r)) {
      for (const v of spec.volumes || []) {
        if (v.configMap && ren(ns, v.configMap.name))
          v.configMap.name = ren(ns, v.configMap.name);
        for (const s of (v.projected && v.projected.sources) || [])
          if (s.configMap && ren(ns, s.configMap.name))
            s.configMap.name = ren(ns, s.configMap.name);
      }
      for (const c of [...(spec.initContainers || []),
        ...(spec.containers || [])]) {
        for (const e of c.env || []) {
          const ref = e.valueFrom && e.valueFrom.configMapKeyRef;
          if (ref && ren(ns, ref.name)) ref.name = ren(ns, ref.name);
        }
        for (const e of c.envFrom || [])
          if (e.configMapRef && ren(ns, e.configMapRef.name))
            e.configMapRef.name = ren(ns, e.configMapRef.name);
      }
    }
  }
}

// ---- build -----------------------------------------------------------------

function buildDir(dir, stack) {
  const kfile = findKustomization(dir);
  if (!kfile) fail(`${dir}: no kustomization.yaml`);
  const real = fs.realpathSync(dir);
  if (stack.includes(real)) fail(`${dir}: kustomization cycle`);
  stack = [...stack, real];
  const docs = readYamlDocs(kfile);
  if (docs.length !== 1) fail(`${kfile}: expected one document`);
  const k = docs[0];
  for (const key of Object.keys(k))
    if (!SUPPORTED_KEYS.has(key))
      fail(`${kfile}: "${key}" is not supported by kustomize-lite ` +
        '(tools/kustomize-lite.js)');
  if (k.kind && k.kind !== 'Kustomization')
    fail(`${kfile}: kind ${k.kind} is not supported`);

  let resources = [];
  for (const entry of k.resources || []) {
    if (/^[a-z]+:\/\//.test(entry) || entry.startsWith('github.com/'))
      fail(`${kfile}: remote resource ${entry}: offline rendering only`);
    const p = path.resolve(dir, entry);
    if (!fs.existsSync(p)) fail(`${kfile}: resource ${entry} not found`);
    if (fs.statSync(p).isDirectory()) resources.push(...buildDir(p, stack));
    else resources.push(...readYamlDocs(p));
  }
  runConfigMapGenerators(k, dir, resources, kfile);

  const patches = [];
  for (const p of k.patchesStrategicMerge || [])
    patches.push({ path: p });
  patches.push(...(k.patches || []));
  for (const p of patches) {
    if (typeof p === 'string') fail(`${kfile}: patches entries are objects`);
    if (p.options) fail(`${kfile}: patch options are not supported`);
    let docs2;
    let origin;
    if (p.path) {
      origin = path.resolve(dir, p.path);
      if (!fs.existsSync(origin)) fail(`${kfile}: patch ${p.path} not found`);
      docs2 = readYamlDocs(origin);
    } else if (p.patch) {
      origin = `${kfile}: inline patch`;
      docs2 = parseYamlDocs(p.patch, origin);
    } else {
      fail(`${kfile}: a patch needs path or patch`);
    }
    for (const d of docs2) applyPatch(resources, d, p.target, origin);
  }

  if (k.namespace) applyNamespace(resources, k.namespace);
  if (k.commonLabels) applyLabels(resources, k.commonLabels, true, true);
  for (const l of k.labels || []) {
    if (!isObj(l.pairs)) fail(`${kfile}: labels entry without pairs`);
    if (l.fields) fail(`${kfile}: labels fields are not supported`);
    applyLabels(resources, l.pairs, !!l.includeSelectors,
      !!l.includeTemplates);
  }
  if (k.images) applyImages(resources, k.images);

  const seen = new Set();
  for (const r of resources) {
    if (!r.kind || !r.metadata || !r.metadata.name)
      fail(`${kfile}: an object without kind or metadata.name`);
    const id = resId(r);
    if (seen.has(id)) fail(`${kfile}: ${id} is defined twice`);
    seen.add(id);
  }
  return resources;
}

// kustomize's "legacy" output order.
const ORDER_FIRST = ['Namespace', 'ResourceQuota', 'StorageClass',
  'CustomResourceDefinition', 'ServiceAccount', 'PodSecurityPolicy', 'Role',
  'ClusterRole', 'RoleBinding', 'ClusterRoleBinding', 'ConfigMap', 'Secret',
  'Endpoints', 'Service', 'LimitRange', 'PriorityClass', 'PersistentVolume',
  'PersistentVolumeClaim', 'Deployment', 'StatefulSet', 'CronJob',
  'PodDisruptionBudget'];
const ORDER_LAST = ['MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration'];

function orderKey(r) {
  let i = ORDER_FIRST.indexOf(r.kind);
  if (i < 0) i = ORDER_LAST.indexOf(r.kind) >= 0
    ? 1000 + ORDER_LAST.indexOf(r.kind) : 500;
  return i;
}

/**
 * Render the kustomization in @p dir. Returns a list of plain objects, or
 * throws KustomizeError with a message naming the file.
 */
function build(dir) {
  const resources = buildDir(path.resolve(dir), []);
  finishGenerated(resources);
  return resources.map((r) => clone(r)).sort((a, b) => {
    const d = orderKey(a) - orderKey(b);
    if (d) return d;
    const ka = `${a.apiVersion} ${a.kind} ${a.metadata.namespace || ''} ` +
      a.metadata.name;
    const kb = `${b.apiVersion} ${b.kind} ${b.metadata.namespace || ''} ` +
      b.metadata.name;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

function toYaml(resources) {
  return resources.map((r) => YAML.stringify(r, { lineWidth: 0 }))
    .join('---\n');
}

module.exports = { build, toYaml, parseYamlDocs, configMapHash,
  KustomizeError };

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node kustomize-lite.js DIR\n');
    process.exit(2);
  }
  try {
    process.stdout.write(toYaml(build(dir)));
  } catch (e) {
    if (!(e instanceof KustomizeError)) throw e;
    process.stderr.write(`kustomize-lite: ${e.message}\n`);
    process.exit(1);
  }
}
