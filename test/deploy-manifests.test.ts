// deploy/k8s and deploy/kserve, checked offline:
//  - yamllint with the repository's .yamllint.yml (Debian package "yamllint"; skipped locally
//    when missing, a failure in CI);
//  - every built-in Kubernetes object against the OpenAPI schema of its kind, as bundled by the
//    npm package kubernetes-models (Kubernetes 1.3x schemas compiled to validators), and the
//    ServiceMonitor against the Prometheus Operator CRD schema of @kubernetes-models/prometheus-operator;
//  - KServe's ServingRuntime and InferenceService have no schema package: their containers are
//    checked against the core/v1 Container schema and their fields by hand (below);
//  - the GPU overlay: its JSON patch applied to the base Deployment here, the result validated
//    (and compared with `kubectl kustomize` when kubectl is installed);
//  - consistency: probe paths exist in the server's OpenAPI document, every SLIM_* variable is
//    accepted by the server's own config parser, the drain fits the grace period, selectors
//    select, the ConfigMap's routing tables parse with the server's routing parser.
// The compiled schema validators accept unknown fields (as kubectl without --validate=strict
// does), so unknown fields are caught separately: each object is type-checked by the TypeScript
// compiler against the same package's interfaces (IDeployment, IServiceMonitor, ...), whose
// excess-property check refuses a field the API does not have (kubeconform -strict, offline).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/serve/config.js';
import { parseRoutingTable } from '../src/serve/routing/table.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { post } from './helpers/http.js';
import { REPO_ROOT, which } from './helpers/paths.js';
import { startTestServer } from './helpers/serve.js';

const K8S = resolve(REPO_ROOT, 'deploy/k8s');
const KSERVE = resolve(REPO_ROOT, 'deploy/kserve');
const inCi = process.env.CI === 'true';

const onPath = (bin: string): boolean => which(bin) !== null;

type Obj = Record<string, any>;

function readDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  return docs.map((d) => {
    assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Obj;
  });
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .map((f) => join(dir, f));
}

/** Every object of a kustomization directory, in resource order (kustomization.yaml itself excluded). */
function resources(dir: string): Obj[] {
  const k = readDocs(join(dir, 'kustomization.yaml'))[0]!;
  return (k.resources as string[]).flatMap((r) => readDocs(join(dir, r)));
}

const KIND_MODULES: Record<string, string> = {
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Service': 'kubernetes-models/v1/Service',
  'v1/PersistentVolumeClaim': 'kubernetes-models/v1/PersistentVolumeClaim',
  'v1/Pod': 'kubernetes-models/v1/Pod',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'monitoring.coreos.com/v1/ServiceMonitor': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
};

/** Validate against the bundled schema; throws with the schema's message. */
async function schemaValidate(obj: Obj): Promise<void> {
  const key = `${obj.apiVersion}/${obj.kind}`;
  const mod = KIND_MODULES[key];
  assert.ok(mod, `no offline schema for ${key} (${obj.metadata?.name})`);
  const exports = (await import(mod)) as Record<string, new (o: Obj) => { validate(): void }>;
  const Model = exports[obj.kind as string]!;
  new Model(obj).validate();
}

/**
 * Unknown fields, by the TypeScript compiler: each object becomes `const x: I<Kind> = <json>;`
 * in a virtual file at the repository root (so kubernetes-models resolves from node_modules).
 * Returns the diagnostics, one line each, naming the object.
 */
function strictFieldCheck(objs: { label: string; obj: Obj }[]): string[] {
  const file = resolve(REPO_ROOT, '__deploy_manifests_check__.ts');
  const lines: string[] = [];
  const labels: string[] = [];
  objs.forEach(({ label, obj }, i) => {
    const key = `${obj.apiVersion}/${obj.kind}`;
    const mod = KIND_MODULES[key];
    assert.ok(mod, `no types for ${key}`);
    lines.push(`import type { I${obj.kind} as T${i} } from ${JSON.stringify(mod)};`);
    labels.push(label);
  });
  objs.forEach(({ obj }, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(obj)};`));
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.start === undefined) return text;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    const lineText = d.file.text.split('\n')[line] ?? '';
    const m = /^export const o(\d+)/.exec(lineText);
    return `${m ? labels[Number(m[1])] : `line ${line}`}: ${text}`;
  });
}

/** RFC 6902 test/add/replace on a copy: what kustomize does with a JSON patch. */
function applyJsonPatch(doc: Obj, ops: Obj[]): Obj {
  const out = structuredClone(doc);
  for (const op of ops) {
    const parts = (op.path as string)
      .split('/')
      .slice(1)
      .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = parts.pop()!;
    let parent: Obj = out;
    for (const p of parts) {
      parent = Array.isArray(parent) ? parent[Number(p)] : parent[p];
      assert.ok(parent !== undefined, `patch path ${op.path}: ${p} missing`);
    }
    if (op.op === 'test') assert.deepEqual(Array.isArray(parent) ? parent[Number(last)] : parent[last], op.value, `patch test ${op.path}`);
    else if (op.op === 'add' && Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
    else if (op.op === 'add' || op.op === 'replace') {
      if (op.op === 'replace') assert.ok(last in parent, `patch replace ${op.path}: nothing there`);
      parent[last] = op.value;
    } else assert.fail(`patch op ${op.op} not supported here`);
  }
  return out;
}

function envOf(container: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) env[e.name] = e.value ?? (e.valueFrom ? 'from-a-secret-0123456789' : '');
  return env;
}

const openapiPaths = Object.keys((JSON.parse(readFileSync(resolve(REPO_ROOT, 'openapi/openapi.json'), 'utf8')) as { paths: Obj }).paths);
const dockerUser = Number(/^USER (\d+)/m.exec(readFileSync(resolve(REPO_ROOT, 'Dockerfile'), 'utf8'))![1]);

const YAMLLINT_SKIP =
  !onPath('yamllint') && !inCi ? 'yamllint not on PATH: apt-get install -y --no-install-recommends yamllint (in CI this test fails instead)' : false;

describe('deploy manifests', () => {
  test('yamllint passes on deploy/ with .yamllint.yml, and fails on a bad file', { skip: YAMLLINT_SKIP }, () => {
    const run = spawnSync('yamllint', ['-s', '-c', resolve(REPO_ROOT, '.yamllint.yml'), 'deploy', '.yamllint.yml'], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(run.error, undefined, `yamllint: ${run.error?.message} (apt-get install -y --no-install-recommends yamllint)`);
    assert.equal(run.status, 0, `yamllint:\n${run.stdout}${run.stderr}`);
    const dir = mkdtempSync(join(tmpdir(), 'slim-yamllint-'));
    try {
      writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: ConfigMap\ndata:\n    enabled: yes\n');
      const bad = spawnSync('yamllint', ['-s', '-c', resolve(REPO_ROOT, '.yamllint.yml'), join(dir, 'bad.yaml')], { encoding: 'utf8' });
      assert.notEqual(bad.status, 0, 'yamllint accepted a truthy "yes" and 4-space indentation');
      assert.match(bad.stdout, /truthy/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every kustomization lists every manifest of its directory, and they exist', () => {
    for (const dir of [join(K8S, 'base'), KSERVE]) {
      const k = readDocs(join(dir, 'kustomization.yaml'))[0]!;
      const listed = (k.resources as string[]).map((r) => join(dir, r)).sort();
      const present = yamlFiles(dir)
        .filter((f) => !f.endsWith('kustomization.yaml'))
        .sort();
      assert.deepEqual(listed, present, dir);
    }
    const gpu = readDocs(join(K8S, 'gpu/kustomization.yaml'))[0]!;
    assert.deepEqual(gpu.resources, ['../base']);
  });

  test('base objects pass the Kubernetes / Prometheus Operator schemas', async () => {
    const objs = resources(join(K8S, 'base'));
    assert.deepEqual(objs.map((o) => o.kind).sort(), [
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'Service',
      'ServiceMonitor',
    ]);
    for (const o of objs) await schemaValidate(o);
  });

  test('no unknown fields: TypeScript checks every object against the kubernetes-models interfaces', () => {
    const base = resources(join(K8S, 'base')).map((obj) => ({ label: `${obj.kind}/${obj.metadata.name}`, obj }));
    const gpuDir = join(K8S, 'gpu');
    const k = readDocs(join(gpuDir, 'kustomization.yaml'))[0]!;
    const gpu = applyJsonPatch(base.find((o) => o.obj.kind === 'Deployment')!.obj, readDocs(join(gpuDir, k.patches[0].path))[0] as unknown as Obj[]);
    const [sr] = resources(KSERVE);
    const srPod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'sr' }, spec: { containers: sr!.spec.containers } };
    // The check can fail: a misspelt field in a copy of the Deployment.
    const typo = structuredClone(gpu);
    typo.spec.template.spec.containers[0].readinessProbe.periodSecond = 5;
    const diags = strictFieldCheck([
      ...base,
      { label: 'gpu Deployment', obj: gpu },
      { label: 'ServingRuntime containers', obj: srPod },
      { label: 'typo', obj: typo },
    ]);
    const [typoDiags, others] = [diags.filter((d) => d.startsWith('typo:')), diags.filter((d) => !d.startsWith('typo:'))];
    assert.deepEqual(others, []);
    assert.equal(typoDiags.length, 1, diags.join('\n'));
    assert.match(typoDiags[0]!, /periodSecond/);
  });

  test('the schema check can fail: a broken Deployment is refused', async () => {
    const dep = structuredClone(resources(join(K8S, 'base')).find((o) => o.kind === 'Deployment')!);
    dep.spec.template.spec.containers[0].ports[0].containerPort = '8080';
    await assert.rejects(schemaValidate(dep), /containerPort must be integer/);
    const sm = structuredClone(resources(join(K8S, 'base')).find((o) => o.kind === 'ServiceMonitor')!);
    sm.spec.endpoints[0].interval = '15 seconds';
    await assert.rejects(schemaValidate(sm), /interval must match pattern/);
  });

  const base = resources(join(K8S, 'base'));
  const byKind = (kind: string): Obj => base.find((o) => o.kind === kind)!;

  function checkServingDeployment(dep: Obj): { env: Record<string, string> } {
    const pod = dep.spec.template.spec;
    const c = pod.containers.find((x: Obj) => x.name === 'slimserve');
    assert.ok(c, 'container "slimserve"');
    // Probes hit routes the server has.
    assert.equal(c.readinessProbe.httpGet.path, '/health/ready');
    assert.equal(c.livenessProbe.httpGet.path, '/health/live');
    for (const p of [c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path]) assert.ok(openapiPaths.includes(p), `${p} not in openapi.json`);
    // The server's own parser takes every SLIM_* variable the manifest sets.
    const env = envOf(c);
    const config = loadConfig({ argv: [], env, cwd: '/' });
    assert.equal(config.host, '0.0.0.0');
    const port = c.ports.find((p: Obj) => p.name === 'http').containerPort;
    assert.equal(config.port, port);
    assert.equal(config.models, '/models');
    assert.ok(
      c.volumeMounts.some((m: Obj) => m.mountPath === config.models),
      'SLIM_MODELS is a mounted volume',
    );
    assert.ok(config.feedbackSecret !== null, 'SLIM_FEEDBACK_SECRET is set (signed request ids)');
    assert.ok(config.routingReloadMs > 0, 'routing.json is re-read');
    // The drain fits: preStop sleep + shutdownTimeoutMs + margin <= grace period, and a request
    // accepted just before SIGTERM can finish within shutdownTimeoutMs.
    const pre = c.lifecycle.preStop.exec.command as string[];
    assert.equal(pre[0], 'sleep');
    const preStopS = Number(pre[1]);
    assert.ok(preStopS >= 3 && preStopS <= 15, `preStop sleep ${preStopS}s`);
    assert.ok(
      config.shutdownTimeoutMs >= config.requestTimeoutMs,
      `shutdownTimeoutMs ${config.shutdownTimeoutMs} < requestTimeoutMs ${config.requestTimeoutMs}`,
    );
    const grace = pod.terminationGracePeriodSeconds as number;
    assert.ok(
      preStopS + config.shutdownTimeoutMs / 1000 + 5 <= grace,
      `preStop ${preStopS}s + drain ${config.shutdownTimeoutMs} ms + 5 s margin > grace ${grace}s`,
    );
    // On CPU, workers x threads = the CPUs requested (Node sees the node's cores, not the request).
    if (config.device === 'cpu') assert.equal(config.workers * config.threads.intraOp, Number(c.resources.requests.cpu));
    assert.ok(c.resources.requests.memory && c.resources.limits.memory, 'memory request and limit');
    // Non-root, as the image's USER; nothing written outside mounted volumes.
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, dockerUser);
    for (const x of [...pod.containers, ...(pod.initContainers ?? [])]) {
      assert.equal(x.securityContext.readOnlyRootFilesystem, true, x.name);
      assert.equal(x.securityContext.allowPrivilegeEscalation, false, x.name);
      assert.deepEqual(x.securityContext.capabilities.drop, ['ALL'], x.name);
    }
    // Readiness tolerates one slow probe; a terminating pod leaves the endpoints without it.
    assert.ok(c.readinessProbe.failureThreshold >= 2, 'readiness: one failed probe must not take the pod out');
    assert.ok(c.readinessProbe.timeoutSeconds < c.readinessProbe.periodSeconds);
    // Wherever the root filesystem is read-only, /tmp is a volume (HOME=/tmp in the image).
    for (const x of [...pod.containers, ...(pod.initContainers ?? [])]) {
      assert.ok(
        x.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'),
        `${x.name}: /tmp mounted`,
      );
    }
    // The model volume is filled by the init container from the model image, the way KServe's
    // storage initializer fills /mnt/models: cp -R <image>/models/. <volume>/.
    const volumes = pod.volumes as Obj[];
    const volume = (name: string): Obj => volumes.find((v) => v.name === name) ?? assert.fail(`no volume ${name}`);
    const modelsMount = c.volumeMounts.find((m: Obj) => m.mountPath === config.models);
    assert.equal(modelsMount.readOnly, true, 'the server mounts the repository read-only');
    assert.ok(volume(modelsMount.name).emptyDir, 'one copy per pod: no ReadOnlyMany volume needed');
    const init = pod.initContainers.find((x: Obj) => x.name === 'models');
    assert.equal(init.image, 'slimserve-models');
    const initMount = init.volumeMounts.find((m: Obj) => m.name === modelsMount.name);
    assert.deepEqual(init.command, ['cp', '-R', '/models/.', `${initMount.mountPath}/`]);
    const models = readFileSync(resolve(REPO_ROOT, 'deploy/models.Dockerfile'), 'utf8');
    assert.match(models, /^COPY --chown=10001:10001 \. \/models\/$/m, 'the model image holds the repository at /models');
    assert.match(models, new RegExp(`^USER ${dockerUser}:`, 'm'));
    // routing.json comes from its own directory: SLIM_ROUTING_DIR is the ConfigMap volume, whose
    // items put key <model>.json at <model>/routing.json (the server's layout for --routing-dir).
    const routingMount = c.volumeMounts.find((m: Obj) => m.name === 'routing');
    assert.equal(config.routingDir, routingMount.mountPath);
    assert.ok(!routingMount.subPath, 'a subPath mount never sees ConfigMap updates');
    const routingVolume = volume('routing').configMap;
    const cm = byKind('ConfigMap');
    assert.equal(routingVolume.name, cm.metadata.name);
    assert.deepEqual(
      routingVolume.items,
      Object.keys(cm.data).map((key) => ({ key, path: `${key.slice(0, -'.json'.length)}/routing.json` })),
      'one item per ConfigMap key, at <model>/routing.json',
    );
    return { env };
  }

  test('Deployment: probes, drain, config, security, routing mount', () => {
    const dep = byKind('Deployment');
    checkServingDeployment(dep);
    assert.equal(dep.spec.strategy.rollingUpdate.maxUnavailable, 0);
    // Both images the pod runs are renamed to the registry by the kustomization.
    const k = readDocs(join(K8S, 'base', 'kustomization.yaml'))[0]!;
    assert.deepEqual(k.images.map((i: Obj) => i.name).sort(), ['slimserve', 'slimserve-models']);
  });

  test('Service, HPA, PDB and ServiceMonitor select the Deployment', () => {
    const dep = byKind('Deployment');
    const podLabels = dep.spec.template.metadata.labels as Record<string, string>;
    const selects = (sel: Record<string, string>, labels: Record<string, string>): boolean =>
      Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => labels[k] === v);
    const svc = byKind('Service');
    assert.ok(selects(svc.spec.selector, podLabels), 'Service selects the pods');
    assert.ok(selects(dep.spec.selector.matchLabels, podLabels), 'Deployment selects its pods');
    const port = svc.spec.ports.find((p: Obj) => p.name === 'http');
    assert.ok(
      dep.spec.template.spec.containers[0].ports.some((p: Obj) => p.name === port.targetPort),
      'targetPort names a container port',
    );
    assert.ok(selects(byKind('PodDisruptionBudget').spec.selector.matchLabels, podLabels), 'PDB selects the pods');
    const hpa = byKind('HorizontalPodAutoscaler');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: dep.metadata.name });
    assert.ok(hpa.spec.minReplicas >= 2, 'at least two replicas, so the PDB lets one go');
    const sm = byKind('ServiceMonitor');
    assert.ok(selects(sm.spec.selector.matchLabels, svc.metadata.labels), 'ServiceMonitor selects the Service');
    assert.equal(sm.spec.endpoints[0].port, port.name);
    assert.equal(sm.spec.endpoints[0].path, '/metrics');
  });

  test('ConfigMap: every <model>.json is a routing table the server accepts', () => {
    const cm = byKind('ConfigMap');
    const keys = Object.keys(cm.data);
    assert.ok(keys.length > 0);
    for (const key of keys) {
      assert.match(key, /^[a-z0-9][a-z0-9_-]*\.json$/, key);
      const model = key.slice(0, -'.json'.length);
      const raw = JSON.parse(cm.data[key]) as { variants?: Record<string, unknown> };
      const variants = ['k1', 'k2'].map((name) => ({ name, labels: ['ham', 'spam'] }));
      assert.ok(parseRoutingTable(model, raw, variants), key);
    }
  });

  test("ConfigMap default routing follows the build report: a served model goes to report.json's recommended variant", async () => {
    const raw = JSON.parse(byKind('ConfigMap').data['spam.json']);
    assert.equal(raw.variants, undefined, 'no fixed split: the build report decides');
    // A real server with the manifests' layout: --routing-dir holding spam/routing.json, and a
    // report that recommends k2 (not the shallowest, so following it is visible).
    const repo = createFixtureRepository([{ name: 'spam', labels: ['ham', 'spam'] }]);
    const routing = mkdtempSync(join(tmpdir(), 'slim-deploy-routing-'));
    const servers: RunningServer[] = [];
    try {
      writeFileSync(join(repo.dir, 'spam', 'report.json'), JSON.stringify({ recommended: { variant: 'k2' } }));
      mkdirSync(join(routing, 'spam'));
      writeFileSync(join(routing, 'spam', 'routing.json'), byKind('ConfigMap').data['spam.json']);
      const { server } = await startTestServer({ models: repo.dir, routingDir: routing }, servers);
      const res = await post(`${server.url}/classify`, { inputs: ['free money'], key: 'user-1' });
      assert.equal(res.status, 200);
      assert.equal((res.json as { variant: string }).variant, 'k2');
    } finally {
      for (const s of servers) await s.close();
      repo.cleanup();
      rmSync(routing, { recursive: true, force: true });
    }
  });

  test('alert and dashboard endpoint filters leave out exactly the probes, scrapes and docs (/v2/health too)', () => {
    // PromQL regexes are RE2 and fully anchored; these patterns mean the same in JavaScript.
    const alerts = readFileSync(resolve(REPO_ROOT, 'deploy/prometheus/alerts.yml'), 'utf8');
    const dashboard = JSON.parse(readFileSync(resolve(REPO_ROOT, 'deploy/grafana/slimserve.json'), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
    const exprs = [...alerts.matchAll(/endpoint!~"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
    for (const p of dashboard.panels) for (const t of p.targets ?? []) for (const m of t.expr.matchAll(/endpoint!~"((?:[^"\\]|\\.)*)"/g)) exprs.push(m[1]!);
    assert.ok(exprs.length >= 3, 'two in the alert, one in the dashboard');
    // Every endpoint label the server produces: its route patterns (fastify :param form).
    const endpoints = [
      ...openapiPaths.map((p) => p.replace(/\{(\w+)\}/g, ':$1')),
      '/metrics',
      '/docs',
      '/docs/static/index.html',
      '/openapi.json',
      'unmatched',
    ];
    const probe = (e: string): boolean =>
      /^(\/metrics|\/docs.*|\/openapi\.json|\/health\/.*|\/v2\/health\/.*|\/v2\/models\/[^/]+(\/versions\/[^/]+)?\/ready)$/.test(e);
    assert.ok(endpoints.includes('/v2/health/ready') && endpoints.includes('/v2/models/:model/versions/:version/ready'));
    for (const literal of exprs) {
      const re = new RegExp(`^(?:${literal.replaceAll('\\\\', '\\')})$`);
      for (const e of endpoints) assert.equal(re.test(e), probe(e), `${literal} on ${e}: ${probe(e) ? 'a probe must be left out' : 'an API route must count'}`);
      assert.equal(re.test('/openapiXjson'), false, 'the dot is literal');
    }
  });

  test('GPU overlay: patched Deployment passes the schema and asks for a GPU', async () => {
    const dir = join(K8S, 'gpu');
    const k = readDocs(join(dir, 'kustomization.yaml'))[0]!;
    assert.equal(k.patches.length, 1);
    const ops = readDocs(join(dir, k.patches[0].path))[0] as unknown as Obj[];
    const dep = applyJsonPatch(byKind('Deployment'), ops);
    await schemaValidate(dep);
    const { env } = checkServingDeployment(dep);
    assert.equal(env.SLIM_DEVICE, 'cuda');
    const c = dep.spec.template.spec.containers[0];
    assert.equal(c.resources.limits['nvidia.com/gpu'], 1);
    assert.ok(dep.spec.template.spec.tolerations.some((t: Obj) => t.key === 'nvidia.com/gpu'));
    assert.match(k.images[0].newTag, /cuda/);
    if (onPath('kubectl')) {
      // Cross-check the hand-applied patch against kustomize itself.
      const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const rendered = parseAllDocuments(run.stdout)
        .map((d) => d.toJS() as Obj)
        .find((o) => o.kind === 'Deployment')!;
      const rc = rendered.spec.template.spec.containers[0];
      assert.deepEqual(rc.env, c.env);
      assert.deepEqual(rc.resources, c.resources);
      assert.match(rc.image, /:0\.1\.0-cuda12$/);
    }
  });

  test('KServe: ServingRuntime and InferenceService fit together and the server', async () => {
    const [sr, isvc] = resources(KSERVE);
    assert.equal(sr!.apiVersion, 'serving.kserve.io/v1alpha1');
    assert.equal(sr!.kind, 'ServingRuntime');
    assert.equal(isvc!.apiVersion, 'serving.kserve.io/v1beta1');
    assert.equal(isvc!.kind, 'InferenceService');
    const c = sr!.spec.containers[0];
    assert.equal(c.name, 'kserve-container');
    // The runtime container is a core/v1 Container: schema-checked inside a Pod.
    await schemaValidate({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'sr' }, spec: { containers: sr!.spec.containers } });
    assert.ok(sr!.spec.protocolVersions.includes('v2'), 'Open Inference Protocol');
    for (const p of [c.readinessProbe.httpGet.path, c.livenessProbe.httpGet.path]) assert.ok(openapiPaths.includes(p), `${p} not in openapi.json`);
    assert.ok(openapiPaths.includes('/v2/models/{model}/infer'));
    const config = loadConfig({ argv: [], env: envOf(c), cwd: '/' });
    assert.equal(config.models, '/mnt/models', "KServe's storage initializer target");
    assert.equal(config.port, c.ports[0].containerPort);
    assert.equal(config.port, 8080, 'KServe routes to 8080');
    assert.equal(c.securityContext.runAsUser, dockerUser);
    assert.ok(c.readinessProbe.failureThreshold >= 2, 'readiness: one failed probe must not take the pod out');
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    const tmp = c.volumeMounts.find((m: Obj) => m.mountPath === '/tmp');
    assert.ok(tmp && sr!.spec.volumes.some((v: Obj) => v.name === tmp.name && v.emptyDir), '/tmp is an emptyDir: the root filesystem is read-only');

    const model = isvc!.spec.predictor.model;
    assert.equal(model.runtime, sr!.metadata.name);
    assert.ok(
      sr!.spec.supportedModelFormats.some((f: Obj) => f.name === model.modelFormat.name),
      'runtime supports the model format',
    );
    assert.equal(model.protocolVersion, 'v2');
    assert.match(model.storageUri, /^(pvc|s3|gs|oci|https?):\/\//);
    // The same model image as the Deployment's init container (KServe modelcar).
    const k = readDocs(join(K8S, 'base', 'kustomization.yaml'))[0]!;
    const image = k.images.find((i: Obj) => i.name === 'slimserve-models');
    assert.equal(model.storageUri, `oci://${image.newName}:${image.newTag}`);
    // The ModelSpec is a Container plus KServe's fields.
    const { modelFormat: _f, runtime: _r, protocolVersion: _p, storageUri: _s, ...containerPart } = model;
    await schemaValidate({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'isvc' }, spec: { containers: [{ name: 'kserve-container', ...containerPart }] } });
    assert.ok(isvc!.spec.predictor.terminationGracePeriodSeconds * 1000 >= config.shutdownTimeoutMs + 5000, 'grace period fits the drain');
  });
});
