//! Builds the GraphiQL page
//! (router/graphiql) that the `graphiql` plugin embeds with `include_bytes!`.
//!
//! - `npm ci` in router/graphiql when node_modules is missing, or package-lock.json is
//!   not the one it was installed from (a copy is kept in node_modules);
//! - `node build.mjs` when dist/ is missing or older than any of its inputs;
//! - nothing at all otherwise, so a build without changes there needs no Node.js.
//!
//! Both directories are in the source tree (and .gitignored), not in OUT_DIR: debug and
//! release builds share one install, and router/tests-browser uses the same dist/.
//! `NPM` and `NODE` name other executables; `GRAPHIQL_PREFIX` another asset prefix.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, SystemTime},
};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let page = manifest_dir.join("graphiql");
    let inputs = ["package.json", "package-lock.json", "build.mjs", "index.html", "src"];
    for input in inputs {
        println!("cargo:rerun-if-changed={}", page.join(input).display());
    }
    // Deleting dist/ (or a file in it) builds it again.
    println!("cargo:rerun-if-changed={}", page.join("dist").display());
    for variable in ["NPM", "NODE", "GRAPHIQL_PREFIX"] {
        println!("cargo:rerun-if-env-changed={variable}");
    }

    let _lock = BuildLock::acquire(&page.join(".build.lock"));

    let lockfile = page.join("package-lock.json");
    let installed_lockfile = page.join("node_modules").join(".installed-package-lock.json");
    if fs::read(&lockfile).ok() != fs::read(&installed_lockfile).ok() || !page.join("node_modules").is_dir() {
        let npm = env::var("NPM").unwrap_or_else(|_| "npm".to_string());
        run(Command::new(&npm).args(["ci", "--no-audit", "--no-fund"]).current_dir(&page), &npm, "npm ci");
        fs::copy(&lockfile, &installed_lockfile).expect("copy package-lock.json into node_modules");
    }

    let built = page.join("dist").join("assets.rs"); // build.mjs writes it last
    let stale = match modified(&built) {
        None => true,
        Some(built_at) => inputs.iter().any(|input| newest(&page.join(input)) > Some(built_at)),
    };
    if stale {
        let node = env::var("NODE").unwrap_or_else(|_| "node".to_string());
        run(Command::new(&node).arg("build.mjs").current_dir(&page), &node, "node build.mjs");
    }
}

fn run(command: &mut Command, program: &str, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`{what}` in router/graphiql failed ({status}); its output is above. The router embeds \
             its GraphiQL page, built from the npm package pinned in router/graphiql/package-lock.json."
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` was not found: building the router needs Node.js (18 or later) and npm, \
             for its GraphiQL page (router/graphiql). Install them (Debian: `apt-get install nodejs npm`), \
             or point the NPM and NODE environment variables at them."
        ),
        Err(error) => panic!("could not run `{what}` in router/graphiql: {error}"),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of anything under a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let own = modified(path);
    let Ok(entries) = fs::read_dir(path) else { return own };
    entries.flatten().map(|entry| newest(&entry.path())).fold(own, |a, b| a.max(b))
}

/// Keeps two builds (say debug and release, started together) from running npm in the
/// same directory at once. A lock older than ten minutes is a crashed build's.
struct BuildLock(PathBuf);

impl BuildLock {
    fn acquire(path: &Path) -> BuildLock {
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => return BuildLock(path.to_path_buf()),
                Err(_) => {
                    let stale = modified(path)
                        .and_then(|at| at.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(600));
                    if stale {
                        let _ = fs::remove_file(path);
                    } else {
                        thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
