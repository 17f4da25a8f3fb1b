//! The operator CLI (`customer-service import` / `export`) against a real server.

use std::process::{Command, Output};

use crate::harness::spawn_app;

/// Runs the binary with `args` off the async runtime (the server shares it).
async fn cli<S: AsRef<str>>(args: &[S]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_customer-service"))
            .args(&args)
            .env_remove("CUSTOMER_SERVICE_TOKEN")
            .output()
            .expect("run the CLI")
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn import_reports_writes_failed_rows_and_the_fixed_file_imports() {
    let app = spawn_app().await;
    let server = format!("http://{}", app.addr);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "name,email,mobile\nAda,ada@example.com,\n\"Bad, Row\",bad-email,\nBob,bob@example.com,07911 123480\nNo Contact,,\n",
    )
    .unwrap();
    let errors = dir.path().join("failed.csv");
    let args = [
        "import",
        file.to_str().unwrap(),
        "--server",
        &server,
        "--errors-out",
        errors.to_str().unwrap(),
    ];
    let out = cli(&args).await;
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("sent 4 rows"),
        "plain progress lines when not a terminal: {text}"
    );
    assert!(
        text.contains("created             2") && text.contains("failed              2"),
        "{text}"
    );
    assert!(text.contains("row 2, email \"bad-email\""), "{text}");
    let report = std::fs::read_to_string(&errors).unwrap();
    let mut lines = report.lines();
    assert_eq!(lines.next(), Some("name,email,mobile,import_error"));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("\"Bad, Row\",bad-email,,email: This is not an email address"),
        "{report}"
    );
    assert!(
        lines.next().unwrap().starts_with("No Contact,,,The row has neither"),
        "{report}"
    );
    assert_eq!(lines.next(), None);

    // The operator fixes the file and imports it as it is.
    let fixed = report
        .replace("bad-email", "bad@example.com")
        .replace("No Contact,,", "No Contact,nc@example.com,");
    std::fs::write(&errors, fixed).unwrap();
    let args = ["import", errors.to_str().unwrap(), "--server", &server];
    let out = cli(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("created             2"), "{}", stdout(&out));

    // Export to a file; the file imports back with nothing created.
    let exported = dir.path().join("export.csv");
    let args = ["export", "--server", &server, "--out", exported.to_str().unwrap()];
    let out = cli(&args).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("exported 4 customers"), "{}", stdout(&out));
    let args = ["import", exported.to_str().unwrap(), "--server", &server, "--dry-run"];
    let out = cli(&args).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("unchanged           4") && text.contains("nothing was stored"),
        "{text}"
    );
}

#[tokio::test]
async fn import_of_an_unreachable_server_or_missing_file_fails_clearly() {
    let out = cli(&["import", "/nonexistent/file.csv", "--server", "http://127.0.0.1:1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file.csv"));
}
