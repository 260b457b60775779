//! The shipped Kubernetes manifests, started the way the kubelet starts them, in podman: each
//! overlay rendered by `kubectl kustomize`, its redis-healthd container run with the pod's and
//! the container's securityContext, environment and mounts, its Secrets and ConfigMaps laid out
//! as the kubelet's atomic writer lays them out (`..<timestamp>/` holding the files, `..data`
//! pointing to it, one symlink per key; owner root, group `fsGroup` or root, mode `defaultMode`,
//! gaining 0440 with `fsGroup`), and its probes asked as the kubelet asks them. Everything is read
//! from the rendered manifests, so the next manifest change is what gets tested.

use std::collections::HashMap;
use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::podman::{image, Container, Network};

/// Every overlay (a directory with a kustomization.yaml) under deploy/kubernetes.
pub fn overlays() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("kustomization.yaml").is_file())
        .collect();
    found.sort();
    found
}

/// One overlay's objects, as `kubectl kustomize` renders them.
pub struct Rendered {
    pub name: String,
    objects: Vec<Value>,
}

impl Rendered {
    pub fn of(overlay: &Path) -> Self {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(overlay)
            .output()
            .expect("kubectl (scripts/test installs it)");
        assert!(
            out.status.success(),
            "kubectl kustomize {overlay:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let objects = yaml_serde::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).unwrap())
            .filter(|object| !object.is_null())
            .collect();
        Self {
            name: overlay.file_name().unwrap().to_string_lossy().into_owned(),
            objects,
        }
    }

    fn object(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// The pod template of the overlay's Deployment.
    pub fn pod(&self) -> &Value {
        let deployment = self
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .unwrap_or_else(|| panic!("{}: no Deployment", self.name));
        &deployment["spec"]["template"]["spec"]
    }

    /// The redis-healthd container of the pod, wherever it is (a native sidecar in
    /// `initContainers`, or an ordinary container).
    pub fn sidecar(&self) -> &Value {
        let pod = self.pod();
        ["initContainers", "containers"]
            .iter()
            .filter_map(|list| pod[*list].as_array())
            .flatten()
            .find(|c| {
                c["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("redis-healthd"))
            })
            .unwrap_or_else(|| panic!("{}: no redis-healthd container", self.name))
    }

    /// A key's bytes in a Secret or ConfigMap of the rendered manifests, or else in `outside`
    /// (objects the cluster holds apart from them, such as cert-manager's certificate).
    fn data(&self, kind: &str, name: &str, outside: &Outside) -> Vec<(String, Vec<u8>)> {
        if let Some(object) = self.object(kind, name) {
            let mut found = Vec::new();
            for (field, encoded) in [
                ("data", kind == "Secret"),
                ("stringData", false),
                ("binaryData", true),
            ] {
                for (key, value) in object[field].as_object().into_iter().flatten() {
                    let text = value.as_str().unwrap();
                    let bytes = if encoded {
                        base64_decode(text)
                    } else {
                        text.as_bytes().to_vec()
                    };
                    found.push((key.clone(), bytes));
                }
            }
            return found;
        }
        outside
            .get(name)
            .unwrap_or_else(|| panic!("{}: the pod mounts {kind} {name}, which the manifests do not hold and the test does not provide", self.name))
            .clone()
    }
}

/// Secrets the cluster holds apart from the manifests: name → (key, bytes).
pub type Outside = HashMap<String, Vec<(String, Vec<u8>)>>;

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    let text: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn number(value: &Value, default: u64) -> u64 {
    value.as_u64().unwrap_or(default)
}

/// The container's security context field, else the pod's.
fn security(pod: &Value, container: &Value, field: &str) -> Value {
    let own = &container["securityContext"][field];
    if own.is_null() {
        pod["securityContext"][field].clone()
    } else {
        own.clone()
    }
}

/// The volumes of one pod, laid out on the host as the kubelet lays them out, and what each
/// file holds by its path in the container.
pub struct Volumes {
    dir: tempfile::TempDir,
    /// (host directory, mount path, read-only) per volume mount of the container.
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// Contents by path inside the container.
    pub files: HashMap<String, Vec<u8>>,
}

impl Volumes {
    pub fn lay_out(rendered: &Rendered, outside: &Outside) -> Self {
        let pod = rendered.pod();
        let container = rendered.sidecar();
        let fs_group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut volumes = Self {
            dir,
            mounts: Vec::new(),
            files: HashMap::new(),
        };
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let name = mount["name"].as_str().unwrap();
            let volume = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{}: no volume {name}", rendered.name));
            let (source, kind, object) = if !volume["secret"].is_null() {
                (
                    &volume["secret"],
                    "Secret",
                    volume["secret"]["secretName"].as_str().unwrap(),
                )
            } else if !volume["configMap"].is_null() {
                (
                    &volume["configMap"],
                    "ConfigMap",
                    volume["configMap"]["name"].as_str().unwrap(),
                )
            } else {
                panic!("{}: volume {name} is neither a Secret nor a ConfigMap: teach the test how the kubelet lays it out", rendered.name)
            };
            // The API server's default mode is 0644.
            let default_mode = number(&source["defaultMode"], 0o644) as u32;
            let data = rendered.data(kind, object, outside);
            let files: Vec<(String, Vec<u8>, u32)> = match source["items"].as_array() {
                Some(items) => items
                    .iter()
                    .map(|item| {
                        let key = item["key"].as_str().unwrap();
                        let bytes = data.iter().find(|(k, _)| k == key).unwrap().1.clone();
                        let mode = number(&item["mode"], default_mode as u64) as u32;
                        (item["path"].as_str().unwrap().to_owned(), bytes, mode)
                    })
                    .collect(),
                None => data.into_iter().map(|(k, v)| (k, v, default_mode)).collect(),
            };
            let host = volumes.dir.path().join(name);
            atomic_write(&host, &files, fs_group);
            let mount_path = mount["mountPath"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
            for (path, bytes, _) in &files {
                volumes
                    .files
                    .insert(format!("{mount_path}/{path}"), bytes.clone());
            }
            let read_only = mount["readOnly"].as_bool().unwrap_or(false);
            volumes.mounts.push((host, mount_path, read_only));
        }
        volumes
    }

    /// A file's contents by its path in the container (a password file, the targets file).
    pub fn text(&self, path: &str) -> Option<String> {
        self.files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

/// The kubelet's atomic writer, then its ownership pass for `fsGroup`.
fn atomic_write(root: &Path, files: &[(String, Vec<u8>, u32)], fs_group: Option<u32>) {
    let stamp = "..2026_12_02_00_00_00.000000001";
    let data_dir = root.join(stamp);
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut top = Vec::new();
    for (path, bytes, mode) in files {
        let file = data_dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).unwrap();
        let first = path.split('/').next().unwrap().to_owned();
        if !top.contains(&first) {
            top.push(first);
        }
    }
    symlink(stamp, root.join("..data")).unwrap();
    for name in &top {
        symlink(format!("..data/{name}"), root.join(name)).unwrap();
    }
    // SetVolumeOwnership: every entry gets group fsGroup (owner root either way); files gain
    // read for owner and group (the volume is read-only), directories setgid and search.
    let group = fs_group.unwrap_or(0);
    walk(root, &mut |path, meta| {
        if meta.file_type().is_symlink() {
            lchown(path, Some(0), Some(group)).unwrap();
            return;
        }
        chown(path, Some(0), Some(group)).unwrap();
        if fs_group.is_some() {
            let mut mode = meta.permissions().mode() & 0o7777;
            mode |= 0o440;
            if meta.is_dir() {
                mode |= 0o2000 | 0o110;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    });
}

fn walk(path: &Path, visit: &mut impl FnMut(&Path, &std::fs::Metadata)) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(&entry.unwrap().path(), visit);
        }
    }
    visit(path, &meta);
}

/// One of the container's probes, as the kubelet reads it.
#[derive(Clone, Debug)]
pub struct Probe {
    pub kind: &'static str,
    pub path: String,
    pub https: bool,
    pub port: u16,
    pub period: Duration,
    pub failure_threshold: u64,
    pub timeout: Duration,
}

impl Probe {
    /// How long the kubelet lets it fail before it acts: failureThreshold × periodSeconds.
    pub fn budget(&self) -> Duration {
        self.period
            .saturating_mul(self.failure_threshold.min(u32::MAX as u64) as u32)
    }

    /// True when a failing probe of this kind makes the kubelet restart the container.
    pub fn restarts(&self) -> bool {
        self.kind != "readinessProbe"
    }
}

/// The container's probes (httpGet only; any other kind fails the test, to be taught here).
pub fn probes(container: &Value) -> Vec<Probe> {
    let port_of = |port: &Value| -> u16 {
        match port {
            Value::Number(n) => n.as_u64().unwrap() as u16,
            Value::String(name) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no container port named {name}"))
                as u16,
            _ => panic!("probe port {port}"),
        }
    };
    ["startupProbe", "readinessProbe", "livenessProbe"]
        .into_iter()
        .filter(|kind| !container[*kind].is_null())
        .map(|kind| {
            let probe = &container[kind];
            let get = &probe["httpGet"];
            assert!(
                !get.is_null(),
                "{kind}: only httpGet probes are run here: {probe}"
            );
            Probe {
                kind,
                path: get["path"].as_str().unwrap_or("/").to_owned(),
                https: get["scheme"] == "HTTPS",
                port: port_of(&get["port"]),
                period: Duration::from_secs(number(&probe["periodSeconds"], 10)),
                failure_threshold: number(&probe["failureThreshold"], 3),
                timeout: Duration::from_secs(number(&probe["timeoutSeconds"], 1)),
            }
        })
        .collect()
}

/// Asks a probe once, as the kubelet does: a GET without credentials, an HTTPS certificate not
/// verified, success for a status from 200 to 399 within the probe's timeout.
pub fn ask(probe: &Probe, addr: std::net::SocketAddr) -> bool {
    let scheme = if probe.https { "https" } else { "http" };
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(probe.timeout.as_secs_f64().to_string())
        .arg(format!("{scheme}://{addr}{}", probe.path))
        .output()
        .expect("curl (scripts/test installs it)");
    let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (200..400).contains(&code)
}

/// The podman arguments that run the sidecar as the kubelet would: user, groups (fsGroup and
/// supplementalGroups), read-only root, capabilities, no privilege escalation, environment,
/// mounts, its ports published on loopback, and its command and args.
pub fn run_args(
    rendered: &Rendered,
    volumes: &Volumes,
    network: &Network,
    extra_mounts: &[(PathBuf, &str)],
) -> Vec<String> {
    let pod = rendered.pod();
    let container = rendered.sidecar();
    let mut args: Vec<String> = vec!["--network".into(), network.name.clone()];
    let user = security(pod, container, "runAsUser");
    let group = security(pod, container, "runAsGroup");
    if let Some(uid) = user.as_u64() {
        let gid = group.as_u64().unwrap_or(0);
        args.push(format!("--user={uid}:{gid}"));
    }
    if security(pod, container, "runAsNonRoot") == true {
        let configured = podman_user(&container["image"]);
        assert!(
            user.as_u64().is_some_and(|u| u != 0) || configured != "0",
            "runAsNonRoot with a root user"
        );
    }
    let mut groups: Vec<u64> = pod["securityContext"]["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    groups.extend(pod["securityContext"]["fsGroup"].as_u64());
    for g in groups {
        args.push(format!("--group-add={g}"));
    }
    if security(pod, container, "readOnlyRootFilesystem") == true {
        args.push("--read-only".into());
    }
    if security(pod, container, "allowPrivilegeEscalation") == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    for cap in container["securityContext"]["capabilities"]["drop"]
        .as_array()
        .into_iter()
        .flatten()
    {
        args.push(format!("--cap-drop={}", cap.as_str().unwrap()));
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let value = var["value"]
            .as_str()
            .unwrap_or_else(|| panic!("env {}: only plain values are run here", var["name"]));
        args.push(format!("--env={}={value}", var["name"].as_str().unwrap()));
    }
    for (host, path, read_only) in &volumes.mounts {
        let ro = if *read_only { ":ro" } else { "" };
        args.push(format!("--volume={}:{path}{ro}", host.display()));
    }
    for (host, path) in extra_mounts {
        args.push(format!("--volume={}:{path}:ro", host.display()));
    }
    for port in container["ports"].as_array().into_iter().flatten() {
        args.push(format!("--publish=127.0.0.1::{}", port["containerPort"]));
    }
    if let Some(command) = container["command"].as_array() {
        args.push(format!(
            "--entrypoint={}",
            serde_json::to_string(command).unwrap()
        ));
    }
    let wanted = container["image"].as_str().unwrap();
    assert_eq!(wanted, image(), "{}: the manifest runs {wanted}", rendered.name);
    args.push(wanted.to_owned());
    for arg in container["args"].as_array().into_iter().flatten() {
        args.push(arg.as_str().unwrap().to_owned());
    }
    args
}

/// The image's configured user (`0` when none).
fn podman_user(image: &Value) -> String {
    let user = super::podman::podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        image.as_str().unwrap(),
    ]);
    if user.is_empty() {
        "0".into()
    } else {
        user.split(':').next().unwrap().to_owned()
    }
}

/// A Redis the pod reaches: where, over TLS or not, and the password it needs (from the
/// pod's own files).
#[derive(Debug)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub password: Option<String>,
}

/// The Redis servers the sidecar checks, read from its environment (REDIS_URL with
/// REDIS_PASSWORD_FILE) or its targets file (REDIS_HEALTHD_CONFIG), with the passwords from
/// the files the pod mounts.
pub fn backends(container: &Value, volumes: &Volumes) -> Vec<Backend> {
    let env: HashMap<&str, &str> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let password = |file: Option<&str>| {
        file.map(|path| {
            volumes
                .text(path)
                .unwrap_or_else(|| panic!("password file {path} is not in any mounted volume"))
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        })
    };
    let backend = |url: &str, password: Option<String>| {
        let url = url::Url::parse(url).unwrap();
        Backend {
            host: url.host_str().unwrap().to_owned(),
            port: url.port().unwrap_or(6379),
            tls: url.scheme() == "rediss",
            password,
        }
    };
    if let Some(config) = env.get("REDIS_HEALTHD_CONFIG") {
        let text = volumes
            .text(config)
            .unwrap_or_else(|| panic!("{config} is not in any mounted volume"));
        let file: toml::Value = toml::from_str(&text).unwrap();
        return file["target"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                backend(
                    t["url"].as_str().unwrap(),
                    password(t.get("password_file").and_then(|p| p.as_str())),
                )
            })
            .collect();
    }
    let url = env.get("REDIS_URL").expect("REDIS_URL or REDIS_HEALTHD_CONFIG");
    vec![backend(url, password(env.get("REDIS_PASSWORD_FILE").copied()))]
}

/// Runs a Redis for each backend on the network, under its host name, with its password and,
/// for `rediss://`, a certificate for that name from `certs` (mounted at /certs).
pub fn start_backends(backends: &[Backend], network: &Network, certs: &super::Certs) -> Vec<Container> {
    backends
        .iter()
        .map(|b| {
            let mut args: Vec<String> = vec!["--save".into(), String::new(), "--appendonly".into(), "no".into()];
            if let Some(password) = &b.password {
                args.extend(["--requirepass".into(), password.clone()]);
            }
            let mut mounts = Vec::new();
            if b.tls {
                certs.sh(&format!(
                    "[ -f {h}.pem ] || {{ printf 'subjectAltName=DNS:{h}\\n' > {h}.ext
                     openssl req -newkey rsa:2048 -nodes -keyout {h}.key -out {h}.csr -subj /CN={h} 2>/dev/null
                     openssl x509 -req -in {h}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {h}.pem -days 2 -extfile {h}.ext 2>/dev/null
                     chmod 0644 {h}.key; }}",
                    h = b.host
                ));
                args.extend(
                    [
                        "--port", "0", "--tls-port", &b.port.to_string(),
                        "--tls-cert-file", &format!("/certs/{}.pem", b.host),
                        "--tls-key-file", &format!("/certs/{}.key", b.host),
                        "--tls-ca-cert-file", "/certs/ca.pem", "--tls-auth-clients", "no",
                    ]
                    .map(String::from),
                );
                mounts.push(format!("--volume={}:/certs:ro", certs.path("").display()));
            } else {
                args.extend(["--port".into(), b.port.to_string()]);
            }
            let mut full: Vec<&str> = mounts.iter().map(String::as_str).collect();
            full.extend(["--network", &network.name, "--network-alias", &b.host, super::podman::REDIS_IMAGE, "redis-server"]);
            full.extend(args.iter().map(String::as_str));
            Container::run("redis", &full)
        })
        .collect()
}
