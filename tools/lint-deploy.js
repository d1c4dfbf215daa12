#!/usr/bin/env node
'use strict';
/*
 * lint-deploy: offline checks of the Kubernetes manifests (make lint-deploy).
 *
 *   node tools/lint-deploy.js --kustomize BIN --helm BIN --k8scheck BIN...
 *        [--evbridge BIN] [DIR...] [--file FILE...] [--chart-values FILE...]
 *
 * DIR is a kustomization, rendered with the real kustomize (`kustomize
 * build`); --chart-values FILE renders the Helm chart deploy/helm/evbridge
 * with that values file (`helm lint`, then `helm template`); --file checks
 * the objects of a manifest file as written. With no target: deploy/k8s/base,
 * every deploy/k8s/overlays/*, and the chart with each of
 * deploy/helm/evbridge/examples/*.yaml. Every object gets one line, OK or
 * FAIL with the reasons, and the exit status is 1 if anything failed (2 for
 * a usage error). The Makefile (target lint-deploy) builds the tools at
 * pinned versions into a cache and passes their paths.
 *
 * Checks:
 *  - schema (tools/k8scheck, once per --k8scheck binary: one per supported
 *    Kubernetes release): strict decoding into the k8s.io/api types
 *    (unknown fields, wrong types), the API server's metadata and selector
 *    rules, and the custom resources against their published CRD schemas
 *    (Strimzi KafkaTopic and KafkaUser, Prometheus Operator
 *    ServiceMonitor); an apiVersion/kind with no schema is a failure;
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
 *    Strimzi resources name their cluster (label strimzi.io/cluster);
 *  - cross references: Service and ServiceMonitor selectors find their
 *    targets, named ports exist;
 *  - drift: an example values file of the chart with the same name as an
 *    overlay (examples/prod.yaml, overlays/prod) must produce the same
 *    Deployment, Service and evbridge config as the overlay.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const util = require('util');
const { execFileSync, spawnSync } = require('child_process');
const YAML = require('yaml');

const ROOT = path.resolve(__dirname, '..');
const CHART = path.join(ROOT, 'deploy', 'helm', 'evbridge');

const POD_TEMPLATE = {
  Deployment: ['spec', 'template'], StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'], ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};


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
    // State topics: scale.shards + 1 (partitioned by shard), or 1 (made
    // before; read whole, partitions can be added later). Any other count
    // is read whole and cannot be partitioned by shard in place.
    for (const t of [`${sp}.checkpoints`, `${sp}.seen`]) {
      const kt = objs.find((o) => o.kind === 'KafkaTopic' &&
        (get(o, ['spec', 'topicName']) || o.metadata.name) === t);
      if (!kt) continue;
      const p = get(kt, ['spec', 'partitions']);
      if (p !== shards + 1 && p !== 1)
        errs.push(`KafkaTopic ${t} has ${p} partition(s); with scale.shards ` +
          `${shards} a state topic has ${shards + 1} (one per shard and ` +
          'partition 0; docs/scaling.md, "State partitions")');
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


// The operators only act on resources that name their Kafka cluster.
function checkStrimzi(o, errs) {
  const cluster = get(o, ['metadata', 'labels', 'strimzi.io/cluster']);
  if (typeof cluster !== 'string' || !cluster)
    errs.push('metadata.labels."strimzi.io/cluster" is required (the ' +
      'Kafka cluster the operator manages)');
}

// ---- driver -------------------------------------------------------------------

function lintObject(o, objs, opts) {
  const errs = [];
  if (!isObj(o)) return ['not a mapping'];
  if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string')
    return ['apiVersion and kind are required'];
  if (o.apiVersion.startsWith('kafka.strimzi.io/')) checkStrimzi(o, errs);
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

function run(bin, args, input) {
  const r = spawnSync(bin, args, {
    input, encoding: 'utf8', maxBuffer: 64 << 20,
  });
  if (r.error) throw new Error(`${bin}: ${r.error.message}`);
  return r;
}

function firstLines(s, n) {
  return String(s).trim().split('\n').slice(0, n).join(' | ');
}

// The rendered manifests of a target, as text.
function render(t, opts) {
  if (t.file) return fs.readFileSync(t.file, 'utf8');
  if (t.dir) {
    const r = run(opts.kustomize, ['build', t.dir]);
    if (r.status !== 0) throw new Error(`kustomize build: ${firstLines(r.stderr, 5)}`);
    return r.stdout;
  }
  const lint = run(opts.helm, ['lint', '--strict', CHART, '-f', t.values]);
  if (lint.status !== 0) {
    // One reason per schema violation or lint error, each once.
    const why = new Set();
    for (const l of (lint.stdout + lint.stderr).split('\n')) {
      const m = /^\s*(?:\[ERROR\] [^:]*: )?- (at '.*)$/.exec(l) ||
        /^\[(?:ERROR|WARNING)\] (?!templates\/: values don't meet)(.*)$/.exec(l);
      if (m) why.add(`values: ${m[1].trim()}`);
    }
    const e = new Error('helm lint failed');
    e.reasons = why.size ? [...why] : [firstLines(lint.stdout + lint.stderr, 5)];
    throw e;
  }
  const r = run(opts.helm, ['template', 'evbridge', CHART, '-f', t.values,
    '--namespace', 'evbridge']);
  if (r.status !== 0) throw new Error(`helm template: ${firstLines(r.stderr, 8)}`);
  return r.stdout;
}

function parseDocs(text, label) {
  const out = [];
  for (const d of YAML.parseAllDocuments(text)) {
    if (d.errors && d.errors.length)
      throw new Error(`${label}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

// The key k8scheck's report of an object is found under (it reports
// missing strings as empty ones).
function objKey(o) {
  const s = (v) => (typeof v === 'string' ? v : '');
  return `${s(get(o, ['apiVersion']))} ${s(get(o, ['kind']))} ` +
    `${s(get(o, ['metadata', 'namespace']))}/${s(get(o, ['metadata', 'name']))}`;
}

// Schema errors of every object, by object key, from each k8scheck binary
// (one per Kubernetes release). An error every release reports is listed
// once; one that only some report names them.
function schemaErrors(text, opts) {
  const per = [];
  for (const c of opts.k8scheck) {
    const r = run(c.bin, [], text);
    if (r.status !== 0 && r.status !== 1)
      throw new Error(`k8scheck (Kubernetes ${c.version}): ` +
        firstLines(r.stderr, 3));
    const m = new Map();
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      const x = JSON.parse(line);
      const k = `${x.apiVersion} ${x.kind} ${x.namespace || ''}/${x.name}`;
      m.set(k, (m.get(k) || []).concat(x.errors));
    }
    per.push({ version: c.version, errors: m });
  }
  const keys = new Set(per.flatMap((p) => [...p.errors.keys()]));
  const out = new Map();
  for (const k of keys) {
    const msgs = [];
    const all = new Set(per.flatMap((p) => p.errors.get(k) || []));
    for (const e of all) {
      const who = per.filter((p) => (p.errors.get(k) || []).includes(e))
        .map((p) => p.version);
      msgs.push(who.length === per.length ? `schema: ${e}`
        : `schema (Kubernetes ${who.join(', ')}): ${e}`);
    }
    out.set(k, msgs);
  }
  return out;
}

// ---- drift: chart vs overlay ------------------------------------------------

// Labels that say who rendered an object and which installation it is
// (the release name or the overlay's instance label), not what it does.
const CHART_ONLY_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by',
  'app.kubernetes.io/version', 'app.kubernetes.io/instance'];

function dropLabels(labels) {
  if (!isObj(labels)) return labels;
  const out = { ...labels };
  for (const l of CHART_ONLY_LABELS) delete out[l];
  return out;
}

// What must agree between the chart and an overlay: the Deployment, the
// Service and the evbridge config, less what only says who rendered it
// (chart labels, the config checksum annotation, kustomize's name hash).
function driftView(objs) {
  const dep = objs.find((o) => o.kind === 'Deployment' && isEvbridge(o));
  const svc = objs.find((o) => o.kind === 'Service' && isEvbridge(o));
  const view = {};
  if (dep) {
    const d = JSON.parse(JSON.stringify(dep));
    const tm = d.spec.template.metadata || {};
    tm.labels = dropLabels(tm.labels);
    delete tm.annotations;
    for (const v of get(d, ['spec', 'template', 'spec', 'volumes']) || [])
      if (v.configMap) v.configMap.name = v.configMap.name
        .replace(/-[a-z0-9]{10}$/, '');
    view.Deployment = { labels: dropLabels(d.metadata.labels), spec: d.spec };
    const cmName = (get(dep, ['spec', 'template', 'spec', 'volumes']) || [])
      .map((v) => v.configMap && v.configMap.name).find(Boolean);
    const cm = objs.find((o) => o.kind === 'ConfigMap' &&
      o.metadata.name === cmName);
    const text = cm && cm.data && cm.data['evbridge.json'];
    try {
      view.config = JSON.parse(text);
    } catch (e) {
      view.config = text;
    }
  }
  if (svc) view.Service = { labels: dropLabels(svc.metadata.labels),
    spec: svc.spec };
  return view;
}

function diffPaths(a, b, p, out) {
  if (out.length >= 12) return;
  if (isObj(a) && isObj(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)]))
      diffPaths(a[k], b[k], p ? `${p}.${k}` : k, out);
  } else if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
    a.forEach((x, i) => diffPaths(x, b[i], `${p}[${i}]`, out));
  } else if (!util.isDeepStrictEqual(a, b)) {
    out.push(`${p}: chart ${JSON.stringify(a)}, overlay ${JSON.stringify(b)}`
      .slice(0, 240));
  }
}

// ---- main ---------------------------------------------------------------------

function usage() {
  return 'usage: lint-deploy.js --kustomize BIN --helm BIN --k8scheck BIN... ' +
    '[--evbridge BIN] [DIR...] [--file FILE...] [--chart-values FILE...]\n';
}

function main(argv) {
  const targets = [];
  const opts = { k8scheck: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--file') targets.push({ file: argv[++i] });
    else if (a === '--chart-values') targets.push({ values: argv[++i] });
    else if (a === '--evbridge') opts.evbridge = argv[++i];
    else if (a === '--kustomize') opts.kustomize = argv[++i];
    else if (a === '--helm') opts.helm = argv[++i];
    else if (a === '--k8scheck') opts.k8scheck.push({ bin: argv[++i] });
    else if (a === '-h' || a === '--help') {
      process.stdout.write(usage());
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`lint-deploy: unknown option ${a}\n${usage()}`);
      return 2;
    } else targets.push({ dir: a });
  }
  for (const [k, v] of [['--kustomize', opts.kustomize],
    ['--helm', opts.helm], ['--k8scheck', (opts.k8scheck[0] || {}).bin],
    ['--evbridge', opts.evbridge]]) {
    if (k === '--evbridge' && v === undefined) continue;
    if (!v || !fs.existsSync(v)) {
      process.stderr.write(`lint-deploy: ${k} ${v || '(missing)'}: not ` +
        `found\n${usage()}`);
      return 2;
    }
  }
  for (const c of opts.k8scheck)
    c.version = run(c.bin, ['--version']).stdout.trim();
  let drift = false;
  if (!targets.length) {
    drift = true;
    const k8s = path.join(ROOT, 'deploy', 'k8s');
    targets.push({ dir: path.join(k8s, 'base') });
    const ov = path.join(k8s, 'overlays');
    for (const d of fs.readdirSync(ov).sort())
      if (fs.statSync(path.join(ov, d)).isDirectory())
        targets.push({ dir: path.join(ov, d) });
    const ex = path.join(CHART, 'examples');
    for (const f of fs.readdirSync(ex).sort())
      if (f.endsWith('.yaml')) targets.push({ values: path.join(ex, f) });
  }
  process.stdout.write(`lint-deploy: schemas of Kubernetes ` +
    `${opts.k8scheck.map((c) => c.version).join(' and ')}\n`);

  let total = 0, failed = 0;
  const views = { chart: new Map(), overlay: new Map() };
  for (const t of targets) {
    const label = t.values
      ? `${path.relative(process.cwd(), CHART)} -f ` +
        path.relative(process.cwd(), t.values)
      : path.relative(process.cwd(), t.dir || t.file) || (t.dir || t.file);
    let objs, schema;
    try {
      const text = render(t, opts);
      objs = parseDocs(text, label);
      schema = schemaErrors(text, opts);
    } catch (e) {
      process.stdout.write(`FAIL ${label}: cannot render: ${e.message}\n`);
      for (const r of e.reasons || []) process.stdout.write(`       - ${r}\n`);
      total++;
      failed++;
      continue;
    }
    process.stdout.write(`${label}: ${objs.length} object(s)\n`);
    if (!objs.length) {
      process.stdout.write(`FAIL ${label}: no objects\n`);
      failed++;
    }
    const unmatched = new Set(schema.keys());
    for (const o of objs) {
      unmatched.delete(objKey(o));
      const errs = [...(schema.get(objKey(o)) || []),
        ...lintObject(o, objs, { ...opts, rawFiles: !!t.file })];
      total++;
      if (errs.length) {
        failed++;
        process.stdout.write(`FAIL ${objName(o)}\n`);
        for (const e of errs) process.stdout.write(`       - ${e}\n`);
      } else {
        process.stdout.write(`OK   ${objName(o)}\n`);
      }
    }
    // k8scheck and this reader must see the same objects: a report that
    // matched none is not dropped.
    for (const k of unmatched) {
      total++;
      failed++;
      process.stdout.write(`FAIL ${k}: reported by k8scheck, not read here\n`);
      for (const e of schema.get(k)) process.stdout.write(`       - ${e}\n`);
    }
    if (t.values) views.chart.set(path.basename(t.values, '.yaml'), driftView(objs));
    else if (t.dir) views.overlay.set(path.basename(t.dir), driftView(objs));
  }

  if (drift) {
    for (const [name, cv] of views.chart) {
      const ov = views.overlay.get(name);
      if (!ov || name === 'base') continue;
      const what = `drift: chart -f examples/${name}.yaml vs overlays/${name}`;
      const diffs = [];
      for (const k of ['Deployment', 'Service', 'config']) {
        if (!cv[k] || !ov[k]) {
          diffs.push(`${k}: missing from the ${cv[k] ? 'overlay' : 'chart'}`);
          continue;
        }
        const d = [];
        diffPaths(cv[k], ov[k], k, d);
        diffs.push(...d);
      }
      total++;
      if (diffs.length) {
        failed++;
        process.stdout.write(`FAIL ${what}\n`);
        for (const e of diffs) process.stdout.write(`       - ${e}\n`);
      } else {
        process.stdout.write(`OK   ${what}: same Deployment, Service, config\n`);
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
