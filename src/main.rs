//! The `ssogate` command: run the gateway, check a config file, make development certificates, administer members,
//! diagnose tokens, print the config's JSON Schema.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ssogate::config::Config;

/// ssogate: JWT single sign-on (Tribe / MeltingSpot style) in front of a forum that has none.
///
/// Runs a reverse proxy in front of the forum named by `upstream.url`. Every request is forwarded unchanged, with
/// X-Forwarded-For/-Proto/-Host set (client-sent values are kept only from `trusted_proxies`) and hop-by-hop
/// headers removed. Logging follows RUST_LOG (e.g. RUST_LOG=info,ssogate=debug); the access log target is
/// `ssogate::access`. SIGHUP reloads the config file (an invalid one is refused and the running config stays).
/// SIGTERM or SIGINT stop accepting, let requests in flight finish (up to `limits.shutdown_timeout`) and exit 0.
#[derive(Debug, Parser)]
#[command(name = "ssogate", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// The YAML config file to run with (see config/ssogate.example.yaml for every key).
    #[arg(
        long,
        short,
        env = "SSOGATE_CONFIG",
        value_name = "PATH",
        global = true
    )]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Run,
    /// Load and validate a config file: prints `ok`, or every error with its key and line, and exits non-zero.
    CheckConfig {
        /// The file to check (default: --config / SSOGATE_CONFIG).
        path: Option<PathBuf>,
    },
    /// Make a local development CA and a certificate it signs for localhost, 127.0.0.1, ::1 and --host names.
    ///
    /// Writes ca.crt, gateway.crt and gateway.key into --out. Never use these in production.
    DevCerts {
        /// Directory to write into.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// Extra DNS name or IP address for the certificate (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
    /// Find members, change their status and end their sessions, through a running gateway's admin API.
    ///
    /// Address and token: --admin-url and --token (or SSOGATE_ADMIN_TOKEN), else the `admin` section of --config,
    /// else http://127.0.0.1:9090. Exits 0 on success, 1 when the API refuses or cannot be reached, 2 on a usage error.
    Members(ssogate::cli_members::MembersArgs),
    /// Try the SSO flow in a browser: a demo forum behind the gateway, a demo sign-in site and a ready sign-in link.
    ///
    /// Needs no config file (--config is not read) and no other software. Prints the forum's URL and a sign-in link
    /// on stdout; keeps members in a temporary directory removed at exit. Ctrl-C stops it.
    Demo(ssogate::demo::DemoArgs),
    /// Diagnose SSO tokens against the config (see token check --help).
    Token(ssogate::token_check::TokenArgs),
    /// Print a JSON Schema (draft 2020-12) of the config file, for editors and CI linters.
    ConfigSchema,
}

const EXAMPLES: &str = "\
Examples:
  ssogate --config /etc/ssogate/ssogate.yaml     run the gateway
  SSOGATE_CONFIG=ssogate.yaml ssogate            the same, config from the environment
  ssogate check-config ssogate.yaml              validate before (re)starting
  ssogate dev-certs --out certs/dev              TLS files for local testing
  ssogate demo                                   try the SSO flow in a browser, no config needed
  ssogate members list --status deactivated      members, through the admin API (see members --help)
  ssogate token check < token.txt                why would the gateway refuse this token (or sign-in URL)?
  ssogate token check --json \"$SIGN_IN_URL\"      the same for a pasted sign-in URL, as JSON
  ssogate config-schema > ssogate.schema.json    JSON Schema for editors (yaml-language-server)";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::CheckConfig { path } => check_config(path.or(cli.config)),
        Command::DevCerts { out, hosts } => dev_certs(&out, &hosts),
        Command::Members(args) => ssogate::cli_members::run(args, cli.config.as_deref()),
        Command::Demo(args) => ssogate::demo::run(&args),
        Command::Token(args) => ssogate::token_check::run(args, cli.config.as_deref()),
        Command::ConfigSchema => {
            println!("{:#}", ssogate::config::schema::json_schema());
            ExitCode::SUCCESS
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    let Some(path) = path else {
        eprintln!("ssogate: no config file: pass --config PATH or set SSOGATE_CONFIG (try --help)");
        return Err(ExitCode::from(2));
    };
    Config::load(&path).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::from(2)
    })
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // The files the config names are part of its validity: a start that would fail must fail here first.
    if let Some(tls) = &config.tls {
        if let Err(error) = ssogate::tls::server_config(tls) {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    }
    println!("ok");
    ExitCode::SUCCESS
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path.clone()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let log = ssogate::logging::init(config.log.format);
    // The workers run their own runtimes (see server::start); this one only waits for signals and runs timers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ssogate: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::spawn(ssogate::logging::flush_periodically(log.clone()));
        let running = match ssogate::start(&config).await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(error = %error, "cannot start");
                eprintln!("ssogate: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(path) = path {
            tokio::spawn(ssogate::server::reload_on_sighup(running.reloader(), path));
        }
        let token = running.shutdown_token();
        tokio::spawn(async move {
            ssogate::server::stop_signal().await;
            token.cancel();
            // A second signal means "now": an operator who asks twice does not want to wait for slow clients.
            ssogate::server::stop_signal().await;
            tracing::warn!("second stop signal: exiting without waiting for requests in flight");
            std::process::exit(1);
        });
        running.serve_until_stopped().await;
        ExitCode::SUCCESS
    });
    log.flush();
    code
}

fn dev_certs(out: &std::path::Path, hosts: &[String]) -> ExitCode {
    match ssogate::tls::make_dev_certs(out, hosts) {
        Ok(made) => {
            println!(
                "wrote {}, {} and {} (development only: trust ca.crt in a test browser, never in production)",
                made.ca_cert.display(),
                made.cert.display(),
                made.key.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ssogate: {error}");
            ExitCode::FAILURE
        }
    }
}
