//! `scripts/load.sh` as a newcomer first runs it: `--help` explains and
//! starts nothing, and a missing tool is named, not installed unasked.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/load.sh")
}

#[test]
fn help_prints_usage_and_runs_nothing() {
    for flag in ["--help", "-h"] {
        let out = Command::new("bash")
            .arg(script())
            .arg(flag)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(stdout.starts_with("Usage: scripts/load.sh"), "{stdout}");
        assert!(stdout.contains("--install"), "{stdout}");
        assert!(out.stderr.is_empty(), "nothing ran: {out:?}");
    }
    let out = Command::new("bash")
        .arg(script())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn missing_tools_are_named_and_not_installed_without_install() {
    // A PATH with the few tools the script needs before its check, and
    // neither wrk nor curl nor apt-get.
    let bin = std::env::temp_dir().join(format!("load-sh-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).unwrap();
    let which = |tool: &str| {
        let found = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&found.stdout).trim().to_owned()
    };
    for tool in ["dirname", "id"] {
        std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
    }
    // Started by its full path: the child's PATH has no bash.
    let out = Command::new(which("bash"))
        .arg(script())
        .env("PATH", &bin)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&bin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing wrk curl") && stderr.contains("--install"),
        "{stderr}"
    );
    assert!(!stderr.contains("installing"), "{stderr}");
}
