// Validates deploy/kubernetes/*.yaml offline: every document against the
// Kubernetes API's JSON schemas (kubernetes-models' validate(): types,
// required fields, enums, formats), then the rules this project sets for
// its agent pods. No cluster is involved.
//
//   node validate_kubernetes.js DIR NODE_MODULES
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, modules] = process.argv.slice(2);
const req = (m) => require(path.join(modules, m));
const YAML = req('yaml');
const models = {
  'apps/v1/DaemonSet': req('kubernetes-models/apps/v1').DaemonSet,
  'v1/Service': req('kubernetes-models/v1').Service,
  'v1/Secret': req('kubernetes-models/v1').Secret,
  'v1/Namespace': req('kubernetes-models/v1').Namespace,
};

const problems = [];
const seen = {};
function check(ok, where, what) {
  if (!ok) problems.push(`${where}: ${what}`);
}

for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'));
  docs.forEach((doc, i) => {
    const where = `${file}#${i}`;
    if (doc.errors.length) {
      problems.push(`${where}: YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
      return;
    }
    const obj = doc.toJS();
    if (obj === null) return;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const Model = models[key];
    if (!Model) {
      problems.push(`${where}: no schema known here for ${key}`);
      return;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      problems.push(`${where}: ${key}: ${e.message}`);
      return;
    }
    seen[key] = obj;
  });
}

const ds = seen['apps/v1/DaemonSet'];
check(ds, 'deploy/kubernetes', 'no DaemonSet');
if (ds) {
  const pod = ds.spec.template.spec;
  const c = pod.containers.find((x) => x.name === 'sockagentd');
  check(c, 'DaemonSet', 'no container named sockagentd');
  if (c) {
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      check(c[probe] && c[probe].grpc && c[probe].grpc.port === 7878, 'DaemonSet',
            `${probe} must be a gRPC health probe on 7878`);
    }
    check(c.resources && c.resources.requests && c.resources.limits &&
          c.resources.limits.memory, 'DaemonSet', 'resource requests and a memory limit');
    const sc = c.securityContext || {};
    check(sc.allowPrivilegeEscalation === false, 'DaemonSet', 'allowPrivilegeEscalation: false');
    check(sc.readOnlyRootFilesystem === true, 'DaemonSet', 'readOnlyRootFilesystem: true');
    check(sc.capabilities && JSON.stringify(sc.capabilities.drop) === '["ALL"]' &&
          !sc.capabilities.add, 'DaemonSet', 'capabilities: drop ALL, add none');
    const args = c.args || [];
    check(args.some((a) => a.startsWith('--token-file=')), 'DaemonSet',
          'the agent must get --token-file (it listens beyond loopback)');
    const tokenPath = (args.find((a) => a.startsWith('--token-file=')) || '=').split('=')[1];
    const mount = (c.volumeMounts || []).find((m) => tokenPath.startsWith(m.mountPath + '/'));
    const vol = mount && (pod.volumes || []).find((v) => v.name === mount.name);
    check(vol && vol.secret, 'DaemonSet', `--token-file ${tokenPath} must come from a Secret volume`);
  }
  check(pod.securityContext && pod.securityContext.runAsNonRoot === true &&
        pod.securityContext.runAsUser === 10001, 'DaemonSet',
        'runAsNonRoot with uid 10001 (the image\'s user)');
  check(pod.automountServiceAccountToken === false, 'DaemonSet',
        'the agent needs no Kubernetes API token');
}
const svc = seen['v1/Service'];
check(svc && svc.spec.clusterIP === 'None', 'Service', 'a headless Service (clusterIP: None)');
if (svc && ds) {
  const sel = svc.spec.selector || {};
  const labels = ds.spec.template.metadata.labels || {};
  check(Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v),
        'Service', 'its selector must match the DaemonSet\'s pods');
}

if (problems.length) {
  console.log(problems.map((p) => `FAIL ${p}`).join('\n'));
  process.exit(1);
}
console.log(`OK: ${Object.keys(seen).join(', ')} valid`);
