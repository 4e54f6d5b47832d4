//! Checks of everything under deploy/: the Kubernetes manifests against the Kubernetes schemas
//! (kubernetes-validate, strict), their cross-references (selectors, port names, env flags),
//! the Prometheus rules (`promtool check rules`, `promtool test rules`), the PrometheusRule
//! mirroring rules.yml, the systemd unit (`systemd-analyze`, when present) and the Dockerfile.
//!
//! The tools come from `.ci/install-test-deps`; a missing one fails the test with that hint
//! (only systemd-analyze, which a container may lack, is skipped with a note).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Kubernetes versions the manifests must validate against: an older floor still widely run,
/// and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];
const MESH_PORT: u64 = 39527;
const HTTP_PORT: u64 = 39528;
const MONITORING_API: &str = "monitoring.coreos.com/v1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

/// The full path of `name` on PATH, or a failure that says how to get it.
fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: run `.ci/install-test-deps` (as root) first")
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts a zero exit status, showing the tool's output otherwise.
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        text(output)
    );
}

/// Every YAML document of `path` (empty ones dropped), as JSON values. PyYAML does the parsing
/// (kubernetes-validate depends on it), so the tests need no YAML crate.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let python = require_tool("python3");
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  print(json.dumps(docs))";
    let output = run(Command::new(python).arg("-c").arg(script).arg(path));
    assert!(
        output.status.success(),
        "cannot parse {} as YAML (if PyYAML is missing, run `.ci/install-test-deps`):\n{}",
        path.display(),
        text(&output)
    );
    match serde_json::from_slice(&output.stdout).expect("python printed JSON") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} should hold one document", path.display());
    docs.remove(0)
}

/// All manifests under deploy/kubernetes, by file.
fn manifests() -> BTreeMap<PathBuf, Vec<Value>> {
    let dir = deploy("kubernetes");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes exists") {
        let path = entry.expect("readable dir entry").path();
        if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            let docs = yaml_docs(&path);
            assert!(!docs.is_empty(), "{} is empty", path.display());
            out.insert(path, docs);
        }
    }
    assert!(out.len() >= 6, "expected the manifests, found {out:?}");
    out
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

fn is_crd(doc: &Value) -> bool {
    doc["apiVersion"] == MONITORING_API
}

/// The one resource of `kind` named `name` across all manifests.
fn find<'a>(all: &'a BTreeMap<PathBuf, Vec<Value>>, kind_: &str, name_: &str) -> &'a Value {
    let found: Vec<&Value> = all
        .values()
        .flatten()
        .filter(|d| kind(d) == kind_ && name(d) == name_)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind_} {name_}, found {found:?}"
    );
    found[0]
}

/// Does a label selector's matchLabels (or a Service's plain selector) pick these labels?
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector is a map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn as_array(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
}

/// The `meshd` container of a pod template.
fn meshd_container(workload: &Value) -> &Value {
    as_array(&workload["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"] == "meshd")
        .unwrap_or_else(|| {
            panic!(
                "{} {} has no meshd container",
                kind(workload),
                name(workload)
            )
        })
}

fn env_value<'a>(container: &'a Value, var: &str) -> Option<&'a Value> {
    as_array(&container["env"])
        .iter()
        .find(|e| e["name"] == var)
}

fn seconds(duration: &str) -> f64 {
    if let Some(ms) = duration.strip_suffix("ms") {
        ms.parse::<f64>().expect("number of ms") / 1000.0
    } else if let Some(s) = duration.strip_suffix('s') {
        s.parse().expect("number of seconds")
    } else {
        panic!("unexpected duration {duration:?}")
    }
}

/// `MESHD_*` variable names that `meshd agent --help` documents.
fn meshd_env_flags() -> BTreeSet<String> {
    let output = run(Command::new(env!("CARGO_BIN_EXE_meshd")).args(["agent", "--help"]));
    assert_success(&output, "meshd agent --help");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let flags: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        // `[env: NAME=value]`, or `[env: NAME]` for a flag whose value is hidden (a key).
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect();
    assert!(
        flags.contains("MESHD_MESH_PEER_URLS"),
        "help lists env vars: {help}"
    );
    flags
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let tool = require_tool("kubernetes-validate");
    let all = manifests();
    let mut core_files = Vec::new();
    let mut core_docs = 0;
    for (path, docs) in &all {
        let crds = docs.iter().filter(|d| is_crd(d)).count();
        // A file mixing both would draw a "no schema" warning that hides real ones.
        assert!(
            crds == 0 || crds == docs.len(),
            "{} mixes Prometheus Operator resources with core ones",
            path.display()
        );
        if crds == 0 {
            core_files.push(path.clone());
            core_docs += docs.len();
        }
    }
    for version in KUBERNETES_VERSIONS {
        let output = run(Command::new(&tool)
            .args(["--strict", "--kubernetes-version", version])
            .args(&core_files));
        let out = text(&output);
        assert_success(
            &output,
            &format!("kubernetes-validate (Kubernetes {version})"),
        );
        // An unknown apiVersion/kind is only a warning with exit 0: treat it as a failure.
        assert!(
            !out.contains("WARN") && !out.contains("ERROR"),
            "kubernetes-validate warned (Kubernetes {version}):\n{out}"
        );
        let passed = out.matches(" passed for resource ").count();
        assert_eq!(
            passed, core_docs,
            "every resource should pass (Kubernetes {version}):\n{out}"
        );
    }
}

#[test]
fn statefulset_and_sidecar_are_wired_for_meshd() {
    let all = manifests();
    let flags = meshd_env_flags();
    let headless = find(&all, "Service", "meshd-headless");
    let sts = find(&all, "StatefulSet", "meshd");
    let gateway = find(&all, "Deployment", "gateway");
    let gateway_mesh = find(&all, "Service", "gateway-mesh");

    let spec = &sts["spec"];
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert_eq!(spec["serviceName"], name(headless));
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));
    let pdb = find(&all, "PodDisruptionBudget", "meshd");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let http = find(&all, "Service", "meshd-http");
    assert!(selects(&http["spec"]["selector"], pod_labels));

    for (workload, service) in [(sts, headless), (gateway, gateway_mesh)] {
        let what = format!("{} {}", kind(workload), name(workload));
        let pod = &workload["spec"]["template"];
        // Headless, listing unready pods, selecting this workload, carrying both ports.
        let svc = &service["spec"];
        assert_eq!(svc["clusterIP"], "None", "{}", name(service));
        assert_eq!(svc["publishNotReadyAddresses"], true, "{}", name(service));
        assert!(
            selects(&svc["selector"], &pod["metadata"]["labels"]),
            "{what}"
        );
        let svc_ports: BTreeSet<(String, u64)> = as_array(&svc["ports"])
            .iter()
            .map(|p| {
                (
                    p["protocol"].as_str().unwrap().to_string(),
                    p["port"].as_u64().unwrap(),
                )
            })
            .collect();
        assert!(
            svc_ports.contains(&("UDP".into(), MESH_PORT)),
            "{svc_ports:?}"
        );
        assert!(
            svc_ports.contains(&("TCP".into(), HTTP_PORT)),
            "{svc_ports:?}"
        );

        // Service links would set MESHD_PORT=tcp://… for a Service named meshd.
        assert_eq!(pod["spec"]["enableServiceLinks"], false, "{what}");
        let c = meshd_container(workload);
        for var in as_array(&c["env"]) {
            let var = var["name"].as_str().unwrap();
            assert!(
                !var.starts_with("MESHD_") || flags.contains(var),
                "{what}: {var} is not a meshd flag (see `meshd agent --help`)"
            );
        }
        let peers = env_value(c, "MESHD_MESH_PEER_URLS").expect("seeds")["value"].clone();
        assert_eq!(peers, format!("{}:{MESH_PORT}", name(service)), "{what}");
        let advertise = env_value(c, "MESHD_MESH_ADVERTISE_HOST").expect("advertise host");
        let from_pod_ip = advertise["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            || (advertise["value"] == "$(POD_IP)"
                && env_value(c, "POD_IP").expect("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"]
                    == "status.podIP");
        assert!(from_pod_ip, "{what}: advertise the pod IP, got {advertise}");
        assert_eq!(
            env_value(c, "MESHD_HOST").expect("http host")["value"],
            "0.0.0.0"
        );
        // The API is on every interface, so calls that change the node must not be open to
        // everyone: without a token they are loopback-only, and a token never sits inline.
        if let Some(token) = env_value(c, "MESHD_API_TOKEN_FILE") {
            assert!(token["value"].is_string(), "{what}: token file {token}");
        }
        // Gossip is sealed, with the key from a Secret, never written in the manifest.
        let key = env_value(c, "MESHD_ENCRYPT_KEY").expect("a cluster key");
        assert!(key.get("value").is_none(), "{what}: key inline: {key}");
        assert!(
            key["valueFrom"]["secretKeyRef"]["name"].is_string(),
            "{what}: key from a Secret, got {key}"
        );

        let ports: BTreeMap<&str, (&str, u64)> = as_array(&c["ports"])
            .iter()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                (
                    p["name"].as_str().unwrap(),
                    (proto, p["containerPort"].as_u64().unwrap()),
                )
            })
            .collect();
        assert_eq!(
            ports.get("meshd-gossip"),
            Some(&("UDP", MESH_PORT)),
            "{what}"
        );
        assert_eq!(ports.get("meshd-http"), Some(&("TCP", HTTP_PORT)), "{what}");
        for p in as_array(&svc["ports"]) {
            let target = p["targetPort"].as_str().expect("named targetPort");
            assert!(
                ports.contains_key(target),
                "{}: no port {target}",
                name(service)
            );
        }
        // Ready when ALIVE; alive while the process answers (a joining node is not restarted).
        let ready = &c["readinessProbe"]["httpGet"];
        assert_eq!(ready["path"], "/ha/health", "{what}");
        assert_eq!(ready["port"], "meshd-http", "{what}");
        let live = &c["livenessProbe"]["httpGet"];
        assert_eq!(live["path"], "/ha/status", "{what}");
        assert_eq!(live["port"], "meshd-http", "{what}");

        // SIGTERM leave must finish before the kubelet's SIGKILL.
        let leave = env_value(c, "MESHD_LEAVE_TIMEOUT")
            .and_then(|v| v["value"].as_str())
            .map_or(2.0, seconds);
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_f64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace >= leave + 2.0,
            "{what}: grace {grace}s vs leave {leave}s"
        );

        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{what}"
        );
        assert_eq!(
            pod["spec"]["securityContext"]["runAsNonRoot"], true,
            "{what}"
        );
        let res = &c["resources"];
        assert!(res["requests"]["cpu"].is_string() && res["requests"]["memory"].is_string());
        assert!(res["limits"]["memory"].is_string(), "{what}: memory limit");
    }
}

#[test]
fn monitoring_resources_match_services_and_rules_yml() {
    let all = manifests();
    let monitor = find(&all, "ServiceMonitor", "meshd");
    let rule = find(&all, "PrometheusRule", "meshd");
    for doc in [monitor, rule] {
        assert_eq!(doc["apiVersion"], MONITORING_API, "{}", kind(doc));
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "manifests are namespace-agnostic"
        );
    }

    // The ServiceMonitor scrapes /metrics on meshd-http of both headless Services, not twice
    // through meshd-http's ClusterIP Service.
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    for svc in ["meshd-headless", "gateway-mesh"] {
        let svc = find(&all, "Service", svc);
        assert!(
            selects(selector, &svc["metadata"]["labels"]),
            "misses {}",
            name(svc)
        );
        let port_names: Vec<&Value> = as_array(&svc["spec"]["ports"])
            .iter()
            .map(|p| &p["name"])
            .collect();
        for endpoint in as_array(&monitor["spec"]["endpoints"]) {
            assert!(
                port_names.contains(&&endpoint["port"]),
                "{} lacks {}",
                name(svc),
                endpoint["port"]
            );
            assert_eq!(endpoint["path"], "/metrics");
        }
    }
    let http = find(&all, "Service", "meshd-http");
    assert!(
        !selects(selector, &http["metadata"]["labels"]),
        "meshd-http would be scraped twice"
    );

    let rules = yaml_doc(&deploy("prometheus/rules.yml"));
    assert_eq!(
        rule["spec"]["groups"], rules["groups"],
        "prometheusrule.yaml's spec.groups must equal deploy/prometheus/rules.yml's groups \
         (regenerate it as its header says)"
    );
}

#[test]
fn promtool_checks_the_rules() {
    let promtool = require_tool("promtool");
    let output = run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(deploy("prometheus/rules.yml")));
    assert_success(&output, "promtool check rules");
    assert!(text(&output).contains("SUCCESS"), "{}", text(&output));
}

#[test]
fn promtool_unit_tests_fire_each_alert() {
    // Every alert has at least one case where it fires and one where it must not.
    let rules = yaml_doc(&deploy("prometheus/rules.yml"));
    let tests = yaml_doc(&deploy("prometheus/rules_test.yml"));
    let cases: Vec<&Value> = as_array(&tests["tests"])
        .iter()
        .flat_map(|t| as_array(&t["alert_rule_test"]))
        .collect();
    for group in as_array(&rules["groups"]) {
        for rule in as_array(&group["rules"]) {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let of_alert = || cases.iter().filter(|c| c["alertname"] == alert);
            assert!(
                of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
                "rules_test.yml never fires {alert}"
            );
            assert!(
                of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty)),
                "rules_test.yml never shows {alert} silent"
            );
        }
    }

    let promtool = require_tool("promtool");
    let output = run(Command::new(promtool)
        .args(["test", "rules"])
        .arg(deploy("prometheus/rules_test.yml")));
    assert_success(&output, "promtool test rules");
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy("systemd/meshd.service")).expect("unit");
    for line in [
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "EnvironmentFile=-/etc/meshd/meshd.env",
        "ExecStart=/usr/local/bin/meshd agent",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "meshd.service lacks {line}"
        );
    }
    // The example env file names only real flags, and its leave fits in TimeoutStopSec.
    let flags = meshd_env_flags();
    let env = std::fs::read_to_string(deploy("systemd/meshd.env")).expect("env file");
    let mut leave = 2.0;
    for line in env.lines().map(|l| l.trim_start_matches('#')) {
        let Some((var, value)) = line.split_once('=') else {
            continue;
        };
        if var.starts_with("MESHD_") {
            assert!(flags.contains(var), "meshd.env: {var} is not a meshd flag");
        }
        if var == "MESHD_LEAVE_TIMEOUT" {
            leave = seconds(value);
        }
    }
    let stop = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .expect("TimeoutStopSec")
        .parse::<f64>()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop >= leave + 2.0,
        "TimeoutStopSec={stop} vs leave {leave}s"
    );

    let Some(analyze) = find_tool("systemd-analyze") else {
        eprintln!(
            "note: systemd-analyze not found; skipping `systemd-analyze verify` of meshd.service"
        );
        return;
    };
    // verify insists that ExecStart exists: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("meshd-deploy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("meshd.service");
    let exec = format!("ExecStart={} agent", env!("CARGO_BIN_EXE_meshd"));
    std::fs::write(
        &copy,
        unit.replace("ExecStart=/usr/local/bin/meshd agent", &exec),
    )
    .expect("write unit copy");
    let verify = run(Command::new(&analyze).arg("verify").arg(&copy));
    let security = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&copy));
    let _ = std::fs::remove_dir_all(&dir);
    assert_success(&verify, "systemd-analyze verify");
    // verify exits 0 on unknown keys and bad values, only printing them: fail on any remark
    // about our unit.
    let remarks: Vec<&str> = std::str::from_utf8(&verify.stderr)
        .unwrap_or("")
        .lines()
        .chain(std::str::from_utf8(&verify.stdout).unwrap_or("").lines())
        .filter(|l| l.contains("meshd"))
        .collect();
    assert!(
        remarks.is_empty(),
        "systemd-analyze verify complained:\n{}",
        remarks.join("\n")
    );
    // Exposure at most 2.0 ("OK") of systemd's 10-point scale.
    assert_success(
        &security,
        "systemd-analyze security --threshold=20 (exposure too high)",
    );
}

#[test]
fn dockerfile_builds_the_binary_the_manifests_run() {
    // No container engine here: check what can be checked statically.
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).expect("Dockerfile");
    let ignore = std::fs::read_to_string(deploy("Dockerfile.dockerignore")).expect("dockerignore");
    let lines: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "multi-stage: a build and a runtime stage: {froms:?}"
    );
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm AS "),
        "{}",
        froms[0]
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    // Every COPY from the context names a path that exists and the context keeps.
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(repo().join(src).exists(), "Dockerfile copies missing {src}");
            let kept = format!("!{}", src.trim_end_matches('/'));
            assert!(
                ignore.lines().any(|l| l.trim_end_matches('/') == kept),
                "Dockerfile.dockerignore drops {src}"
            );
        }
    }
    let runtime = &lines[lines.iter().position(|l| *l == froms[1]).unwrap()..];
    assert!(runtime.contains(&"EXPOSE 39527/udp 39528/tcp"), "ports");
    assert!(
        runtime.contains(&"USER 65532:65532"),
        "non-root runtime user"
    );
    assert!(
        runtime.contains(&r#"ENTRYPOINT ["/usr/local/bin/meshd", "agent"]"#),
        "entrypoint"
    );
    // The StatefulSet runs as the image's user.
    let all = manifests();
    let sts = find(&all, "StatefulSet", "meshd");
    assert_eq!(
        sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        65532
    );
}
