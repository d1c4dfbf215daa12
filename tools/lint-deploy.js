#!/usr/bin/env node
'use strict';
/*
 * lint-deploy: offline checks of the Kubernetes manifests (make lint-deploy).
 *
 *   node tools/lint-deploy.js [--evbridge BIN] [DIR...] [--file FILE...]
 *
 * DIR is a kustomization, rendered with tools/kustomize-lite.js (default:
 * deploy/k8s/base and every deploy/k8s/overlays/*); --file lints the
 * objects of a manifest file as written. Every object gets one line, OK or
 * FAIL with the reasons, and the exit status is 1 if any object failed
 * (2 for a usage or rendering error).
 *
 * Checks:
 *  - schema: each core object against its kubernetes-models class
 *    (types, enums, required fields), ServiceMonitor against the
 *    prometheus-operator model, and unknown fields for all of them
 *    (k8s-fields.js); Strimzi KafkaTopic / KafkaUser by our own rules;
 *    an apiVersion/kind with no rules is a failure, not a pass;
 *  - policy, every pod template: runAsNonRoot and a non-zero runAsUser,
 *    no privilege escalation, read-only root filesystem, capabilities
 *    drop ALL, seccomp RuntimeDefault, no privileged / host namespaces /
 *    hostPath, an image with a pinned tag (never :latest or untagged),
 *    cpu and memory requests and limits, liveness and readiness probes;
 *  - evbridge: one active instance (replicas <= 1, strategy Recreate)
 *    unless scale.shards is set (then replicas <= shards and the control
 *    and intake KafkaTopics have one partition per shard), a
 *    PodDisruptionBudget that lets drains through, and the config in the
 *    ConfigMap: valid JSON (and `evbridge --check-config` with --evbridge),
 *    every ${file:...} secret mounted, grace period > drain timeout,
 *    listen port = container port, memory limit fits dedupe.capacity,
 *    state topics match (compacted checkpoints, seen retention >= window);
 *  - cross references: Service and ServiceMonitor selectors find their
 *    targets, named ports exist.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const kustomize = require('./kustomize-lite');
const { unknownFields } = require('./k8s-fields');

const ROOT = path.resolve(__dirname, '..');
const NM = path.join(__dirname, 'node_modules');

// apiVersion/kind -> model module (without .js / .d.ts).
const MODELS = {
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/ServiceAccount': 'kubernetes-models/v1/ServiceAccount',
  'v1/Namespace': 'kubernetes-models/v1/Namespace',
  'v1/Pod': 'kubernetes-models/v1/Pod',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'apps/v1/StatefulSet': 'kubernetes-models/apps/v1/StatefulSet',
  'apps/v1/DaemonSet': 'kubernetes-models/apps/v1/DaemonSet',
  'batch/v1/Job': 'kubernetes-models/batch/v1/Job',
  'batch/v1/CronJob': 'kubernetes-models/batch/v1/CronJob',
  'policy/v1/PodDisruptionBudget':
    'kubernetes-models/policy/v1/PodDisruptionBudget',
  'networking.k8s.io/v1/NetworkPolicy':
    'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
  'networking.k8s.io/v1/Ingress':
    'kubernetes-models/networking.k8s.io/v1/Ingress',
  'rbac.authorization.k8s.io/v1/Role':
    'kubernetes-models/rbac.authorization.k8s.io/v1/Role',
  'rbac.authorization.k8s.io/v1/RoleBinding':
    'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding',
  'monitoring.coreos.com/v1/ServiceMonitor':
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/' +
    'ServiceMonitor',
};

const POD_TEMPLATE = {
  Deployment: ['spec', 'template'], StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'], ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

const DNS1123_SUBDOMAIN =
  /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function isObj(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function get(obj, p) {
  let cur = obj;
  for (const k of p) {
    if (!isObj(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function objName(o) {
  const ns = get(o, ['metadata', 'namespace']);
  return `${o.apiVersion || '?'} ${o.kind || '?'} ` +
    `${ns ? ns + '/' : ''}${get(o, ['metadata', 'name']) || '?'}`;
}

// ---- units -------------------------------------------------------------------

function durationMs(s) {
  if (typeof s !== 'string') return NaN;
  if (s === '0') return 0;
  const re = /(\d+)(ms|s|m|h|d)/gy;
  const mult = { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 };
  let total = 0, m, end = 0;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * mult[m[2]];
    end = re.lastIndex;
  }
  return end === s.length && end > 0 ? total : NaN;
}

function quantityBytes(q) {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)([KMGTPE]i?|[kmM]|)$/.exec(String(q));
  if (!m) return NaN;
  const f = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15,
    E: 1e18, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
    Pi: 1024 ** 5, Ei: 1024 ** 6, m: 1e-3 };
  return Number(m[1]) * f[m[2]];
}

// ---- schema ------------------------------------------------------------------

function schemaErrors(o) {
  const key = `${o.apiVersion}/${o.kind}`;
  const mod = MODELS[key];
  if (!mod) return null;
  const errs = [];
  const Cls = require(mod)[o.kind];
  try {
    new Cls(JSON.parse(JSON.stringify(o))).validate();
  } catch (e) {
    const list = (e.errors || []).map((x) =>
      `schema: ${(x.instancePath || '').replace(/\/(\d+)(?=\/|$)/g, '[$1]')
        .replace(/^\//, '').replace(/\//g, '.') || '(object)'} ` +
      `${x.message}` +
      (x.params && x.params.allowedValues
        ? ` (${x.params.allowedValues.join(', ')})` : ''));
    errs.push(...(list.length ? list : [`schema: ${e.message}`]));
  }
  for (const u of unknownFields(o, path.join(NM, mod + '.d.ts')))
    errs.push(`schema: ${u}`);
  return errs;
}

// ---- Strimzi (no published schema package: our own rules) ---------------

const STRIMZI_VERSIONS = ['kafka.strimzi.io/v1beta2', 'kafka.strimzi.io/v1'];
const ACL_OPS = ['Read', 'Write', 'Create', 'Delete', 'Alter', 'Describe',
  'ClusterAction', 'AlterConfigs', 'DescribeConfigs', 'IdempotentWrite',
  'All'];
const ACL_RESOURCES = ['topic', 'group', 'cluster', 'transactionalId'];

function onlyKeys(obj, allowed, where, errs) {
  if (!isObj(obj)) return;
  for (const k of Object.keys(obj))
    if (!allowed.includes(k)) errs.push(`${where}${k}: unknown field`);
}

function strimziCommon(o, errs) {
  if (!STRIMZI_VERSIONS.includes(o.apiVersion))
    errs.push(`apiVersion must be one of ${STRIMZI_VERSIONS.join(', ')}`);
  const cluster = get(o, ['metadata', 'labels', 'strimzi.io/cluster']);
  if (typeof cluster !== 'string' || !cluster)
    errs.push('metadata.labels."strimzi.io/cluster" is required (the ' +
      'Kafka cluster the operator manages)');
  onlyKeys(o, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '',
    errs);
  if (!isObj(o.spec)) errs.push('spec is required');
}

function checkKafkaTopic(o, errs) {
  strimziCommon(o, errs);
  const s = o.spec || {};
  onlyKeys(s, ['topicName', 'partitions', 'replicas', 'config'], 'spec.',
    errs);
  const name = s.topicName !== undefined ? s.topicName
    : get(o, ['metadata', 'name']);
  if (typeof name !== 'string' || !/^[a-zA-Z0-9._-]{1,249}$/.test(name) ||
      name === '.' || name === '..')
    errs.push(`spec.topicName: "${name}" is not a legal Kafka topic name`);
  for (const k of ['partitions', 'replicas']) {
    if (s[k] === undefined) continue;
    if (!Number.isInteger(s[k]) || s[k] < 1 || s[k] > 32767)
      errs.push(`spec.${k}: expected an integer from 1 to 32767`);
  }
  if (s.config !== undefined) {
    if (!isObj(s.config)) errs.push('spec.config: expected a map');
    for (const [k, v] of Object.entries(s.config || {}))
      if (!['string', 'number', 'boolean'].includes(typeof v))
        errs.push(`spec.config.${k}: expected a string, number or boolean`);
    const cp = s.config && s.config['cleanup.policy'];
    if (cp !== undefined && !/^(compact|delete)(,(compact|delete))?$/.test(
      String(cp).replace(/\s/g, '')))
      errs.push(`spec.config.cleanup.policy: "${cp}" is not compact or ` +
        'delete');
    const r = s.config && s.config['retention.ms'];
    if (r !== undefined && !(Number.isInteger(Number(r)) && Number(r) >= -1))
      errs.push('spec.config.retention.ms: expected an integer >= -1');
  }
}

function checkKafkaUser(o, errs) {
  strimziCommon(o, errs);
  const s = o.spec || {};
  onlyKeys(s, ['authentication', 'authorization', 'quotas', 'template'],
    'spec.', errs);
  const auth = s.authentication;
  if (auth !== undefined && !['tls', 'tls-external', 'scram-sha-512']
    .includes(get(auth, ['type'])))
    errs.push('spec.authentication.type: expected tls, tls-external or ' +
      'scram-sha-512');
  const az = s.authorization;
  if (az === undefined) return;
  if (get(az, ['type']) !== 'simple')
    errs.push('spec.authorization.type: expected simple');
  const acls = get(az, ['acls']);
  if (!Array.isArray(acls) || !acls.length) {
    errs.push('spec.authorization.acls: expected a non-empty list');
    return;
  }
  acls.forEach((a, i) => {
    const w = `spec.authorization.acls[${i}].`;
    onlyKeys(a, ['resource', 'type', 'host', 'operation', 'operations'], w,
      errs);
    const r = (a && a.resource) || {};
    onlyKeys(r, ['type', 'name', 'patternType'], w + 'resource.', errs);
    if (!ACL_RESOURCES.includes(r.type))
      errs.push(`${w}resource.type: expected ${ACL_RESOURCES.join(', ')}`);
    if (r.type !== 'cluster' && (typeof r.name !== 'string' || !r.name))
      errs.push(`${w}resource.name: required for ${r.type}`);
    if (r.patternType !== undefined &&
        !['literal', 'prefix'].includes(r.patternType))
      errs.push(`${w}resource.patternType: expected literal or prefix`);
    const ops = a.operations !== undefined ? a.operations
      : a.operation !== undefined ? [a.operation] : [];
    if (!Array.isArray(ops) || !ops.length)
      errs.push(`${w}operations: expected a non-empty list`);
    else for (const op of ops)
      if (!ACL_OPS.includes(op)) errs.push(`${w}operations: unknown "${op}"`);
    if (a.type !== undefined && !['allow', 'deny'].includes(a.type))
      errs.push(`${w}type: expected allow or deny`);
  });
}

// ---- pod policy ----------------------------------------------------------

function checkImage(image, where, errs) {
  if (typeof image !== 'string' || !image) {
    errs.push(`${where}.image: missing`);
    return;
  }
  if (image.includes('@sha256:')) return;
  const last = image.slice(image.lastIndexOf('/') + 1);
  const colon = last.lastIndexOf(':');
  if (colon < 0) errs.push(`${where}.image: "${image}" has no tag (pin one)`);
  else if (last.slice(colon + 1) === 'latest')
    errs.push(`${where}.image: "${image}" uses :latest (pin a version)`);
}

function checkPodSpec(spec, where, errs) {
  if (!isObj(spec)) {
    errs.push(`${where}: pod spec missing`);
    return;
  }
  const psc = spec.securityContext || {};
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC'])
    if (spec[k] === true) errs.push(`${where}.${k}: must not be true`);
  for (const v of spec.volumes || [])
    if (v.hostPath) errs.push(`${where}.volumes[${v.name}]: hostPath`);
  const all = [...(spec.initContainers || []).map((c) => [c, true]),
    ...(spec.containers || []).map((c) => [c, false])];
  if (!(spec.containers || []).length)
    errs.push(`${where}.containers: none`);
  for (const [c, init] of all) {
    const w = `${where}.${init ? 'initContainers' : 'containers'}` +
      `[${c.name}]`;
    const sc = c.securityContext || {};
    const eff = (k) => (sc[k] !== undefined ? sc[k] : psc[k]);
    if (eff('runAsNonRoot') !== true)
      errs.push(`${w}: runAsNonRoot must be true`);
    const uid = eff('runAsUser');
    if (uid === undefined)
      errs.push(`${w}: runAsUser must be set (non-zero)`);
    else if (uid === 0) errs.push(`${w}: runAsUser is 0 (root)`);
    if (eff('runAsGroup') === 0) errs.push(`${w}: runAsGroup is 0 (root)`);
    if (sc.privileged === true) errs.push(`${w}: privileged`);
    if (sc.allowPrivilegeEscalation !== false)
      errs.push(`${w}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true)
      errs.push(`${w}: readOnlyRootFilesystem must be true`);
    const drop = get(sc, ['capabilities', 'drop']) || [];
    if (!drop.includes('ALL'))
      errs.push(`${w}: capabilities.drop must include ALL`);
    if ((get(sc, ['capabilities', 'add']) || []).length)
      errs.push(`${w}: capabilities.add must be empty`);
    const sp = eff('seccompProfile');
    if (!sp || !['RuntimeDefault', 'Localhost'].includes(sp.type))
      errs.push(`${w}: seccompProfile.type must be RuntimeDefault`);
    checkImage(c.image, w, errs);
    for (const k of ['requests', 'limits'])
      for (const r of ['cpu', 'memory'])
        if (get(c, ['resources', k, r]) === undefined)
          errs.push(`${w}: resources.${k}.${r} missing`);
    if (!init) {
      for (const p of ['livenessProbe', 'readinessProbe'])
        if (!isObj(c[p])) errs.push(`${w}: ${p} missing`);
      for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const port = get(c, [p, 'httpGet', 'port']);
        if (typeof port === 'string' &&
            !(c.ports || []).some((x) => x.name === port))
          errs.push(`${w}: ${p} uses port "${port}", which the container ` +
            'does not name');
      }
    }
  }
}

// ---- evbridge ---------------------------------------------------------------

function isEvbridge(o) {
  return get(o, ['metadata', 'labels', 'app.kubernetes.io/name']) ===
    'evbridge';
}

function matches(selector, labels) {
  if (!isObj(selector) || !Object.keys(selector).length) return false;
  return Object.entries(selector).every(([k, v]) =>
    labels && labels[k] === v);
}

// The Secret key a path under a secret volume mount refers to.
function secretKeyFor(file, mounts, volumes) {
  for (const m of mounts) {
    const mp = m.mountPath.replace(/\/$/, '');
    if (!file.startsWith(mp + '/')) continue;
    const rel = file.slice(mp.length + 1);
    const v = volumes.find((x) => x.name === m.name);
    if (!v || !v.secret) return { mount: m, volume: v, key: null, rel };
    const items = v.secret.items;
    if (items) {
      const it = items.find((x) => x.path === rel);
      return { mount: m, volume: v, key: it ? it.key : undefined, rel };
    }
    return { mount: m, volume: v, key: rel, rel };
  }
  return null;
}

function secretValue(secret, key) {
  if (!secret) return undefined;
  if (secret.stringData && secret.stringData[key] !== undefined)
    return String(secret.stringData[key]);
  if (secret.data && secret.data[key] !== undefined)
    return Buffer.from(String(secret.data[key]), 'base64').toString('utf8');
  return undefined;
}

function checkEvbridgeWorkload(d, objs, opts, errs) {
  const ns = get(d, ['metadata', 'namespace']);
  const same = (o) => get(o, ['metadata', 'namespace']) === ns;
  const replicas = d.spec.replicas === undefined ? 1 : d.spec.replicas;
  const spec = get(d, [...POD_TEMPLATE[d.kind], 'spec']) || {};
  const c = (spec.containers || []).find((x) => x.name === 'evbridge') ||
    (spec.containers || [])[0];
  if (!c) return;
  const mounts = c.volumeMounts || [];
  const volumes = spec.volumes || [];
  const args = c.args || [];
  const ci = args.indexOf('--config');
  const cfgPath = ci >= 0 ? args[ci + 1] : '/etc/evbridge/evbridge.json';
  const cm = mounts.find((m) => cfgPath.startsWith(
    m.mountPath.replace(/\/$/, '') + '/'));
  const cv = cm && volumes.find((v) => v.name === cm.name);
  if (!cv || !cv.configMap) {
    errs.push(`no ConfigMap volume is mounted at ${path.dirname(cfgPath)} ` +
      `(evbridge reads ${cfgPath})`);
    return;
  }
  const key = cfgPath.slice(cm.mountPath.replace(/\/$/, '').length + 1);
  const cmObj = objs.find((o) => o.kind === 'ConfigMap' && same(o) &&
    o.metadata.name === cv.configMap.name);
  if (!cmObj) {
    if (!opts.rawFiles)
      errs.push(`ConfigMap ${cv.configMap.name} is not in the render`);
    return;
  }
  const text = cmObj.data && cmObj.data[key];
  if (typeof text !== 'string') {
    errs.push(`ConfigMap ${cmObj.metadata.name} has no key ${key}`);
    return;
  }
  let cfg;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    errs.push(`${key} in ConfigMap ${cmObj.metadata.name}: ${e.message}`);
    return;
  }

  // Replicas: unsharded, one active producer per transactional.id, so one
  // pod and Recreate; sharded (scale.shards > 0, docs/scaling.md), any
  // number of pods, the group and Kafka's fencing keep one owner per
  // shard, and the control and intake topics need one partition per shard.
  const shards = get(cfg, ['scale', 'shards']) || 0;
  if (d.kind === 'Deployment' && !shards) {
    if (replicas > 1)
      errs.push('spec.replicas: at most 1 without scale.shards (one ' +
        'active producer per transactional.id; docs/scaling.md)');
    if (get(d, ['spec', 'strategy', 'type']) !== 'Recreate')
      errs.push('spec.strategy.type must be Recreate (the old pod stops ' +
        'before the new one starts)');
  }
  if (shards > 0) {
    if (replicas > shards)
      errs.push(`spec.replicas ${replicas} exceeds scale.shards ` +
        `${shards}: the extra pods would own nothing`);
    const sp = get(cfg, ['kafka', 'state_prefix']) || 'evbridge';
    for (const t of [`${sp}.shards`, `${sp}.intake`]) {
      const kt = objs.find((o) => o.kind === 'KafkaTopic' &&
        (get(o, ['spec', 'topicName']) || o.metadata.name) === t);
      if (!kt) continue; // evbridge creates it when allowed
      if (get(kt, ['spec', 'partitions']) !== shards)
        errs.push(`KafkaTopic ${t} has ${get(kt, ['spec', 'partitions'])} ` +
          `partition(s); scale.shards is ${shards} (the partition is the ` +
          'shard: they must match)');
    }
  }

  // Secrets referenced as ${file:...} must be mounted (and exist, when
  // the Secret is part of the render).
  const files = [...text.matchAll(/\$\{file:([^}]+)\}/g)].map((m) => m[1]);
  const values = {};
  for (const f of files) {
    const hit = secretKeyFor(f, mounts, volumes);
    if (!hit) {
      errs.push(`${key}: \${file:${f}} is not under any volume mount`);
      continue;
    }
    if (!hit.volume || !hit.volume.secret) {
      errs.push(`${key}: \${file:${f}} is in volume ${hit.mount.name}, ` +
        'which is not a Secret');
      continue;
    }
    if (hit.key === undefined) {
      errs.push(`${key}: \${file:${f}}: volume ${hit.volume.name} ` +
        `projects no item at path ${hit.rel}`);
      continue;
    }
    const sec = objs.find((o) => o.kind === 'Secret' && same(o) &&
      o.metadata.name === hit.volume.secret.secretName);
    if (sec) {
      const v = secretValue(sec, hit.key);
      if (v === undefined)
        errs.push(`${key}: \${file:${f}}: Secret ` +
          `${sec.metadata.name} has no key ${hit.key}`);
      else values[f] = v;
    }
  }

  const drain = durationMs(get(cfg, ['shutdown', 'drain_timeout']) || '20s');
  const grace = spec.terminationGracePeriodSeconds === undefined ? 30
    : spec.terminationGracePeriodSeconds;
  if (!(grace * 1000 >= drain + 5000))
    errs.push(`terminationGracePeriodSeconds ${grace} must exceed ` +
      `shutdown.drain_timeout (${drain / 1000}s) by at least 5s`);

  const listen = get(cfg, ['http', 'listen']);
  const port = typeof listen === 'string' && listen
    ? Number(listen.slice(listen.lastIndexOf(':') + 1)) : 8080;
  if (listen !== null && listen !== '' &&
      !(c.ports || []).some((p) => p.containerPort === port))
    errs.push(`http.listen port ${port} is not a containerPort`);

  // One dedupe table per owned shard (sharded): with one replica down,
  // a pod may own ceil(shards / (replicas - 1)) of them.
  const cap = get(cfg, ['dedupe', 'capacity']) || 1000000;
  const mem = quantityBytes(get(c, ['resources', 'limits', 'memory']));
  const tables = shards > 0
    ? Math.ceil(shards / Math.max(1, replicas - 1)) : 1;
  const need = tables * cap * 32 + 64 * 1024 * 1024;
  if (Number.isFinite(mem) && mem < need)
    errs.push(`resources.limits.memory ${c.resources.limits.memory} is ` +
      `below ${tables} dedupe table(s) of dedupe.capacity ${cap} x 32 B ` +
      `+ 64 MiB (${Math.ceil(need / 1048576)}Mi)`);

  const prefix = get(cfg, ['kafka', 'state_prefix']) || 'evbridge';
  const topic = (n) => objs.find((o) => o.kind === 'KafkaTopic' &&
    (get(o, ['spec', 'topicName']) || o.metadata.name) === n);
  const cp = topic(`${prefix}.checkpoints`);
  if (cp && get(cp, ['spec', 'config', 'cleanup.policy']) !== 'compact')
    errs.push(`KafkaTopic ${prefix}.checkpoints must be compacted ` +
      '(cleanup.policy: compact)');
  const seen = topic(`${prefix}.seen`);
  const window = durationMs(get(cfg, ['dedupe', 'window']) || '72h');
  const ret = seen && Number(get(seen, ['spec', 'config', 'retention.ms']));
  if (seen && !(ret === -1 || ret >= window))
    errs.push(`KafkaTopic ${prefix}.seen retention.ms ${ret} is shorter ` +
      `than dedupe.window (${window} ms)`);

  if (opts.evbridge) checkConfigWithBinary(opts.evbridge, text, values,
    key, errs);
}

// Run `evbridge --check-config` on the ConfigMap's config, with every
// ${file:...} secret replaced by a temporary file (the rendered Secret's
// value when it is in the render, a placeholder otherwise).
function checkConfigWithBinary(bin, text, values, key, errs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lint-deploy-'));
  try {
    const out = text.replace(/\$\{file:([^}]+)\}/g, (all, f) => {
      const local = path.join(dir, 'secrets', f);
      fs.mkdirSync(path.dirname(local), { recursive: true });
      fs.writeFileSync(local, values[f] !== undefined ? values[f]
        : '0'.repeat(64));
      return `\${file:${local}}`;
    });
    const file = path.join(dir, key);
    fs.writeFileSync(file, out);
    try {
      execFileSync(bin, ['--check-config', file], { stdio: 'pipe' });
    } catch (e) {
      const msg = String(e.stderr || e.message).trim().split(dir).join('');
      errs.push(`evbridge --check-config: ${msg}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function checkPdb(p, objs, errs) {
  const sel = get(p, ['spec', 'selector', 'matchLabels']);
  const ns = get(p, ['metadata', 'namespace']);
  const mu = get(p, ['spec', 'maxUnavailable']);
  if (mu === 0 || mu === '0%' || mu === '0')
    errs.push('spec.maxUnavailable 0 blocks every node drain');
  const ma = get(p, ['spec', 'minAvailable']);
  for (const w of objs) {
    if (!POD_TEMPLATE[w.kind] || get(w, ['metadata', 'namespace']) !== ns)
      continue;
    if (!matches(sel, get(w, [...POD_TEMPLATE[w.kind], 'metadata',
      'labels']))) continue;
    const replicas = w.spec.replicas === undefined ? 1 : w.spec.replicas;
    if (ma !== undefined && (ma === '100%' ||
        (Number.isInteger(ma) && ma >= replicas)))
      errs.push(`spec.minAvailable ${ma} with ${replicas} replica(s) of ` +
        `${w.kind} ${w.metadata.name} blocks every node drain`);
  }
}

function checkService(s, objs, errs) {
  const sel = get(s, ['spec', 'selector']);
  const ns = get(s, ['metadata', 'namespace']);
  const workloads = objs.filter((w) => POD_TEMPLATE[w.kind] &&
    get(w, ['metadata', 'namespace']) === ns);
  if (!workloads.length) return;
  const hit = workloads.find((w) => matches(sel,
    get(w, [...POD_TEMPLATE[w.kind], 'metadata', 'labels'])));
  if (!hit) {
    errs.push('spec.selector matches no pod template in the render');
    return;
  }
  const spec = get(hit, [...POD_TEMPLATE[hit.kind], 'spec']);
  const names = new Set();
  for (const c of spec.containers || [])
    for (const p of c.ports || []) if (p.name) names.add(p.name);
  for (const p of get(s, ['spec', 'ports']) || [])
    if (typeof p.targetPort === 'string' && !names.has(p.targetPort))
      errs.push(`spec.ports[${p.name}].targetPort "${p.targetPort}" is ` +
        `not a port name of ${hit.kind} ${hit.metadata.name}`);
}

function checkServiceMonitor(m, objs, errs) {
  const eps = get(m, ['spec', 'endpoints']) || [];
  if (!eps.length) errs.push('spec.endpoints: none');
  for (const [i, e] of eps.entries()) {
    if (!e.port && e.targetPort === undefined)
      errs.push(`spec.endpoints[${i}]: port or targetPort required`);
    if (e.path !== undefined && !String(e.path).startsWith('/'))
      errs.push(`spec.endpoints[${i}].path must start with /`);
  }
  const ns = get(m, ['metadata', 'namespace']);
  const services = objs.filter((o) => o.kind === 'Service' &&
    get(o, ['metadata', 'namespace']) === ns);
  if (!services.length) return;
  const sel = get(m, ['spec', 'selector', 'matchLabels']);
  const svc = services.find((s) => matches(sel, s.metadata.labels));
  if (!svc) {
    errs.push('spec.selector matches no Service in the render');
    return;
  }
  for (const [i, e] of eps.entries())
    if (e.port && !(svc.spec.ports || []).some((p) => p.name === e.port))
      errs.push(`spec.endpoints[${i}].port "${e.port}" is not a port ` +
        `name of Service ${svc.metadata.name}`);
}

// ---- driver -------------------------------------------------------------------

function lintObject(o, objs, opts) {
  const errs = [];
  if (!isObj(o)) return ['not a mapping'];
  if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string')
    return ['apiVersion and kind are required'];
  const name = get(o, ['metadata', 'name']);
  if (typeof name !== 'string' || name.length > 253 ||
      !DNS1123_SUBDOMAIN.test(name))
    errs.push(`metadata.name "${name}" is not a DNS-1123 subdomain`);
  const ns = get(o, ['metadata', 'namespace']);
  if (ns !== undefined && !(typeof ns === 'string' && ns.length <= 63 &&
      DNS1123_LABEL.test(ns)))
    errs.push(`metadata.namespace "${ns}" is not a DNS-1123 label`);

  if (o.kind === 'KafkaTopic' && o.apiVersion.startsWith('kafka.strimzi.io/'))
    checkKafkaTopic(o, errs);
  else if (o.kind === 'KafkaUser' &&
           o.apiVersion.startsWith('kafka.strimzi.io/'))
    checkKafkaUser(o, errs);
  else {
    const s = schemaErrors(o);
    if (s === null)
      errs.push(`no schema known for ${o.apiVersion} ${o.kind} ` +
        '(add it to MODELS in tools/lint-deploy.js)');
    else errs.push(...s);
  }

  if (POD_TEMPLATE[o.kind] || o.kind === 'Pod') {
    const p = o.kind === 'Pod' ? ['spec'] : [...POD_TEMPLATE[o.kind], 'spec'];
    checkPodSpec(get(o, p), p.join('.'), errs);
    if (POD_TEMPLATE[o.kind] && isEvbridge(o))
      checkEvbridgeWorkload(o, objs, opts, errs);
  }
  if (o.kind === 'PodDisruptionBudget') checkPdb(o, objs, errs);
  if (o.kind === 'Service') checkService(o, objs, errs);
  if (o.kind === 'ServiceMonitor') checkServiceMonitor(o, objs, errs);
  return errs;
}

function readFileObjects(file) {
  return kustomize.parseYamlDocs(fs.readFileSync(file, 'utf8'), file);
}

function main(argv) {
  const targets = [];
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--file') targets.push({ file: argv[++i] });
    else if (a === '--evbridge') opts.evbridge = argv[++i];
    else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: lint-deploy.js [--evbridge BIN] ' +
        '[DIR...] [--file FILE...]\n');
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`lint-deploy: unknown option ${a}\n`);
      return 2;
    } else targets.push({ dir: a });
  }
  if (!targets.length) {
    const k8s = path.join(ROOT, 'deploy', 'k8s');
    targets.push({ dir: path.join(k8s, 'base') });
    const ov = path.join(k8s, 'overlays');
    for (const d of fs.readdirSync(ov).sort())
      if (fs.statSync(path.join(ov, d)).isDirectory())
        targets.push({ dir: path.join(ov, d) });
  }
  if (opts.evbridge && !fs.existsSync(opts.evbridge)) {
    process.stderr.write(`lint-deploy: ${opts.evbridge} not found\n`);
    return 2;
  }

  let total = 0, failed = 0;
  for (const t of targets) {
    const label = path.relative(process.cwd(), t.dir || t.file) ||
      (t.dir || t.file);
    let objs;
    try {
      objs = t.dir ? kustomize.build(t.dir) : readFileObjects(t.file);
    } catch (e) {
      process.stdout.write(`FAIL ${label}: cannot render: ${e.message}\n`);
      total++;
      failed++;
      continue;
    }
    process.stdout.write(`${label}: ${objs.length} object(s)\n`);
    if (!objs.length) {
      process.stdout.write(`FAIL ${label}: no objects\n`);
      failed++;
    }
    for (const o of objs) {
      const errs = lintObject(o, objs, { ...opts, rawFiles: !!t.file });
      total++;
      if (errs.length) {
        failed++;
        process.stdout.write(`FAIL ${objName(o)}\n`);
        for (const e of errs) process.stdout.write(`       - ${e}\n`);
      } else {
        process.stdout.write(`OK   ${objName(o)}\n`);
      }
    }
  }
  process.stdout.write(`lint-deploy: ${total} object(s) checked, ${failed} ` +
    `failed\n`);
  return failed ? 1 : 0;
}

// A reader that stops early (| head) is not an error of ours.
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE') throw e;
});
process.exitCode = main(process.argv.slice(2));
