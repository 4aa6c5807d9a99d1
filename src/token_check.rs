//! `ssogate token check`: why would the gateway refuse this token?
//!
//! Runs the SSO entry's own verification ([`Verifier`]'s steps and the entries' claim profiles, the same functions
//! [`crate::sso::Sso::enter`] calls) one step at a time, and says for each what passed or exactly what failed: the
//! wrong key, a clock that is off by N seconds, the claim that is missing. It never uses the token up: nothing is
//! recorded, no rate limit is counted, and the member directory is only looked at, through a read-only connection
//! ([`Inspector`]), to tell whether the token was used already and which member it would sign in.
//!
//! The token comes from the argument or from stdin (better: a command-line argument is visible in the process list),
//! whole or inside a pasted sign-in URL. The token itself and the configured secrets are never printed.
//! Exit status: 0 when the gateway would accept the token, 1 when it would refuse it, 2 on a usage or config error.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::config::auth::{Profile, SsoConfig};
use crate::directory::{Inspector, SignInPreview, Status};
use crate::reject::Rejection;
use crate::sso::Entry;
use crate::sso::claims::Identity;
use crate::sso::replay;
use crate::sso::token::{self, Header, TokenError, Verifier};

/// The most read from stdin: far more than a token (8 KiB) in a long URL needs.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// Parameters a pasted URL may carry the token in when its path is no configured entry: the platforms' names.
const WELL_KNOWN_TOKEN_PARAMS: [&str; 3] = ["jwt", "token", "ms_token"];

/// `ssogate token`: commands about SSO tokens.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Run the gateway's verification on a token, step by step, without using it up.
    ///
    /// Prints each step (structure, key, signature, time, issuer, audience, jti, the claims of each entry route,
    /// replay, member) with ok or FAIL and the exact reason. Nothing is written: the token still works afterwards.
    /// Reads the config (--config / SSOGATE_CONFIG) and, read-only, the member directory. Exits 0 when the
    /// gateway would accept the token, 1 when it would refuse it, 2 on a usage or config error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The token, or a whole sign-in URL carrying it (jwt, token or ms_token parameter). Absent or `-`: read from
    /// stdin, which is better: an argument is visible to other users in the process list.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,

    /// Check the claims against the entry route answering this path (e.g. /api/auth/sso) [default: the entry a
    /// pasted URL names, else every configured entry].
    #[arg(long, value_name = "PATH")]
    pub entry: Option<String>,

    /// Print one JSON object: {accepted, steps: [{step, ok, detail, entry?, code?, skipped?}], member?, entries}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ssogate token …`; `config` is the global `--config` / `SSOGATE_CONFIG`.
pub fn run(args: TokenArgs, config: Option<&Path>) -> ExitCode {
    match args.command {
        TokenCommand::Check(args) => run_check(&args, config),
    }
}

fn run_check(args: &CheckArgs, config_path: Option<&Path>) -> ExitCode {
    let usage = |message: &str| {
        eprintln!("ssogate token check: {message}");
        ExitCode::from(2)
    };
    let Some(config_path) = config_path else {
        return usage("no config file: pass --config PATH or set SSOGATE_CONFIG");
    };
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    let text = match args.token.as_deref() {
        Some(token) if token != "-" => token.to_owned(),
        _ => match read_stdin() {
            Ok(text) => text,
            Err(message) => return usage(&message),
        },
    };
    let report = match check(&config, &text, args.entry.as_deref(), crate::sso::now()) {
        Ok(report) => report,
        Err(error) => return usage(&error.to_string()),
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_stdin() -> Result<String, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the token from stdin (paste it, then press Enter and Ctrl-D)");
    }
    let mut text = String::new();
    stdin
        .lock()
        .take(MAX_INPUT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
    Ok(text)
}

/// Why a check could not even start: the command was used wrongly, or the config cannot check tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    #[error("the config has no sso section, so the gateway accepts no token")]
    NoSso,
    #[error("no token given (pass it as an argument, or on stdin)")]
    NoToken,
    #[error("the URL is not usable: {0}")]
    BadUrl(String),
    #[error("the URL has no token: none of its parameters {0} is set")]
    NoTokenInUrl(String),
    #[error(
        "the URL carries two different tokens ({0} and {1}); the gateway refuses that (conflicting_tokens)"
    )]
    ConflictingTokens(String, String),
    #[error("no entry route answers {path} (configured: {configured})")]
    UnknownEntry { path: String, configured: String },
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Report {
    pub steps: Vec<Step>,
    /// Each entry route checked: its path, profile, and whether it would sign the member in.
    pub entries: Vec<EntryVerdict>,
    /// The member the first accepting entry would sign in.
    pub member: Option<MemberReport>,
    /// Whether the gateway would accept the token (at one entry at least).
    pub accepted: bool,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub step: &'static str,
    /// The entry route path, for the steps that depend on the entry (claims, member).
    pub entry: Option<String>,
    pub ok: bool,
    pub detail: String,
    /// The refusal code the gateway's JSON error body would carry (`token_expired`, `bad_signature`, ...).
    pub code: Option<&'static str>,
    /// The step could not be run (no directory yet, say): it refuses nothing, and `detail` says why.
    pub skipped: bool,
}

#[derive(Debug, Clone)]
pub struct EntryVerdict {
    pub path: String,
    pub profile: Profile,
    pub accepted: bool,
}

#[derive(Debug, Clone)]
pub struct MemberReport {
    /// The gateway's member id, when the member exists already (a new one gets its id at sign-in).
    pub id: Option<String>,
    pub sub: String,
    pub email: String,
    pub name: String,
    pub profile: Profile,
    pub entry: String,
}

/// The token and where it was found.
struct Input {
    token: String,
    /// For the `input` step: where the token came from.
    source: String,
    /// The path of a pasted URL, when it is an entry route's.
    entry_path: Option<String>,
}

/// Checks `text` (a token, or a URL carrying one) as the gateway's SSO entry would at `now` (Unix seconds).
pub fn check(
    config: &Config,
    text: &str,
    entry: Option<&str>,
    now: i64,
) -> Result<Report, UsageError> {
    let Some(sso) = &config.sso else {
        return Err(UsageError::NoSso);
    };
    let entries: Vec<Entry> = sso.entries.iter().cloned().map(Entry::new).collect();
    let input = read_input(text, &entries)?;
    let chosen: Vec<&Entry> = match entry.or(input.entry_path.as_deref()) {
        Some(path) => {
            let found = entries.iter().find(|e| e.matches(path)).ok_or_else(|| {
                UsageError::UnknownEntry {
                    path: path.to_owned(),
                    configured: entries
                        .iter()
                        .map(|e| e.config().path.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            vec![found]
        }
        None => entries.iter().collect(),
    };
    let verifier = Verifier::new(sso);
    let mut checker = Checker {
        sso,
        verifier: &verifier,
        directory_path: &config.directory.path,
        steps: Vec::new(),
    };
    checker.pass("input", None, input.source.clone());
    let outcome = checker.verify(&input.token, &chosen, now);
    Ok(checker.finish(outcome, &chosen))
}

/// Finds the token in the input: the text itself, or a parameter of a pasted URL.
fn read_input(text: &str, entries: &[Entry]) -> Result<Input, UsageError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(UsageError::NoToken);
    }
    let url = if text.starts_with("http://") || text.starts_with("https://") {
        Some(url::Url::parse(text).map_err(|e| UsageError::BadUrl(e.to_string()))?)
    } else if text.starts_with('/') {
        // A path and query copied from a log line or an address bar without the host.
        let base = url::Url::parse("http://gateway.invalid/")
            .map_err(|e| UsageError::BadUrl(e.to_string()))?;
        Some(
            base.join(text)
                .map_err(|e| UsageError::BadUrl(e.to_string()))?,
        )
    } else {
        None
    };
    let Some(url) = url else {
        return Ok(Input {
            source: format!("a token of {} bytes", text.len()),
            token: text.to_owned(),
            entry_path: None,
        });
    };
    let entry = entries.iter().find(|e| e.matches(url.path()));
    // The names the gateway would read at this URL's entry; for another path, every name any entry reads.
    let mut names: Vec<&str> = Vec::new();
    let configs = entry.map_or_else(
        || entries.iter().map(Entry::config).collect::<Vec<_>>(),
        |e| vec![e.config()],
    );
    for config in configs {
        for name in std::iter::once(&config.token_param).chain(&config.token_aliases) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    if entry.is_none() {
        for name in WELL_KNOWN_TOKEN_PARAMS {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    // Decoded exactly as the gateway decodes its query string (form-urlencoded, `+` is a space).
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(url.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let mut found: Option<(&str, &str)> = None;
    for name in &names {
        for (_, value) in params.iter().filter(|(k, v)| k == name && !v.is_empty()) {
            match found {
                Some((first, token)) if token != value => {
                    return Err(UsageError::ConflictingTokens(
                        first.to_owned(),
                        (*name).to_owned(),
                    ));
                }
                Some(_) => {}
                None => found = Some((name, value)),
            }
        }
    }
    let Some((name, token)) = found else {
        return Err(UsageError::NoTokenInUrl(names.join(", ")));
    };
    let token = token.trim().to_owned();
    let source = match entry {
        Some(entry) => format!(
            "a token of {} bytes from the {name} parameter of a URL for the entry route {} ({})",
            token.len(),
            entry.config().path,
            entry.profile().as_str()
        ),
        None => format!(
            "a token of {} bytes from the {name} parameter of a URL whose path {} is no entry route",
            token.len(),
            url.path()
        ),
    };
    Ok(Input {
        token,
        source,
        entry_path: entry.map(|_| url.path().to_owned()),
    })
}

/// Verification that got past the signature: what the verdict needs.
struct Verified {
    /// Per entry: the identity and its existing member id, when the entry would sign the member in.
    members: Vec<Option<(Identity, Option<String>)>>,
    /// Whether every step that does not depend on the entry passed.
    common_ok: bool,
}

struct Checker<'a> {
    sso: &'a SsoConfig,
    verifier: &'a Verifier,
    directory_path: &'a Path,
    steps: Vec<Step>,
}

impl Checker<'_> {
    fn pass(&mut self, step: &'static str, entry: Option<&str>, detail: String) {
        self.steps.push(Step {
            step,
            entry: entry.map(str::to_owned),
            ok: true,
            detail,
            code: None,
            skipped: false,
        });
    }

    fn skip(&mut self, step: &'static str, entry: Option<&str>, why: String) {
        self.steps.push(Step {
            step,
            entry: entry.map(str::to_owned),
            ok: true,
            detail: why,
            code: None,
            skipped: true,
        });
    }

    fn fail(
        &mut self,
        step: &'static str,
        entry: Option<&str>,
        detail: String,
        code: &'static str,
    ) {
        self.steps.push(Step {
            step,
            entry: entry.map(str::to_owned),
            ok: false,
            detail,
            code: Some(code),
            skipped: false,
        });
    }

    fn fail_token(
        &mut self,
        step: &'static str,
        entry: Option<&str>,
        detail: String,
        error: TokenError,
    ) {
        self.fail(step, entry, detail, code(error));
    }

    /// The steps in the gateway's order. Structure, key and signature stop the check (nothing after them can be
    /// trusted); the claim checks after the signature are independent, so all of them run and each is reported.
    fn verify(&mut self, token: &str, entries: &[&Entry], now: i64) -> Option<Verified> {
        let header = match Header::read(token) {
            Ok(header) => header,
            Err(error) => {
                self.fail_token("structure", None, error.to_string(), error);
                return None;
            }
        };
        let mut shown = Value::Object(header.fields.clone()).to_string();
        if shown.len() > 300 {
            shown = format!("{}…", shown.chars().take(300).collect::<String>());
        }
        self.pass("structure", None, format!("3 parts, header {shown}"));

        let verifier = self.verifier;
        let candidates = match verifier.candidates(&header) {
            Ok(candidates) => candidates,
            Err(error) => {
                let detail = match &error {
                    TokenError::UnknownKey(kid) => format!(
                        "no configured key has kid {kid:?} (keys: {}); add the key to sso.keys or mint with a configured kid",
                        self.key_list()
                    ),
                    _ => format!(
                        "{error}: no configured key is pinned to it (keys: {}); the algorithm comes from the key, never from the token",
                        self.key_list()
                    ),
                };
                self.fail_token("key", None, detail, error);
                return None;
            }
        };
        let names = candidates
            .iter()
            .map(|pinned| format!("{} ({})", pinned.key.id, alg_name(pinned.key.algorithm)))
            .collect::<Vec<_>>()
            .join(", ");
        let detail = match &header.kid {
            Some(kid) => format!("kid {kid:?}: key {names}"),
            None => format!("kid absent; trying keys {names}"),
        };
        self.pass("key", None, detail);

        let (claims, key_id) = match self.verifier.signature(token, &header, &candidates) {
            Ok(verified) => verified,
            Err(error) => {
                let detail = match &error {
                    TokenError::BadSignature => {
                        let tried = candidates
                            .iter()
                            .map(|pinned| pinned.key.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        let symmetric = candidates.iter().all(|pinned| pinned.key.secret.is_some());
                        let hint = if symmetric {
                            "Is the secret the one in sso.keys? It is used as written (its bytes, not hex- or base64-decoded)."
                        } else {
                            "Is the token signed with the private half of the public key in sso.keys?"
                        };
                        format!("signed with none of the configured keys (tried {tried}). {hint}")
                    }
                    other => other.to_string(),
                };
                self.fail_token("signature", None, detail, error);
                return None;
            }
        };
        self.pass("signature", None, format!("verified with key {key_id}"));

        let mut common_ok = true;
        match self.verifier.check_time(&claims, now) {
            Ok(times) => {
                let detail = self.describe_times(times, now);
                self.pass("time", None, detail);
            }
            Err(error) => {
                common_ok = false;
                let detail = self.explain_time(&error, &claims);
                self.fail_token("time", None, detail, error);
            }
        }
        match self.verifier.check_issuer(&claims) {
            Ok(()) => match self.verifier.issuer() {
                None => self.skip("issuer", None, "sso.issuer is not set".to_owned()),
                Some(issuer) => self.pass("issuer", None, format!("iss is {issuer:?}")),
            },
            Err(error) => {
                common_ok = false;
                let detail = format!(
                    "iss is {}, sso.issuer is {:?}",
                    shown_claim(claims.get("iss")),
                    self.verifier.issuer().unwrap_or_default()
                );
                self.fail_token("issuer", None, detail, error);
            }
        }
        match self.verifier.check_audience(&claims) {
            Ok(()) => match self.verifier.audience() {
                None => self.skip("audience", None, "sso.audience is not set".to_owned()),
                Some(_) => {
                    let detail = format!(
                        "aud {} names a configured audience",
                        shown_claim(claims.get("aud"))
                    );
                    self.pass("audience", None, detail);
                }
            },
            Err(error) => {
                common_ok = false;
                let detail = format!(
                    "aud is {}; sso.audience is {:?}",
                    shown_claim(claims.get("aud")),
                    self.verifier.audience().unwrap_or_default()
                );
                self.fail_token("audience", None, detail, error);
            }
        }
        let jti = match token::check_jti(&claims) {
            Ok(jti) => {
                let detail = match &jti {
                    Some(_) => "present: the replay guard knows the token by it (with the key id)",
                    None => "absent: the replay guard knows the token by its whole text",
                };
                self.pass("jti", None, detail.to_owned());
                Some(jti)
            }
            Err(error) => {
                common_ok = false;
                self.fail_token("jti", None, error.to_string(), error);
                None
            }
        };

        let identities = entries
            .iter()
            .map(|entry| {
                let path = entry.config().path.as_str();
                let profile = entry.profile();
                match Identity::check(profile, &claims, &self.sso.custom_fields) {
                    Ok(identity) => {
                        let mut detail = format!(
                            "{} profile: sub {:?}, email {:?}, name {:?}",
                            profile.as_str(),
                            identity.sub,
                            identity.email,
                            identity.name
                        );
                        if !identity.notes.is_empty() {
                            let _ =
                                write!(detail, "; optional claims: {}", identity.notes.join("; "));
                        }
                        self.pass("claims", Some(path), detail);
                        Some(identity)
                    }
                    Err(problems) => {
                        let detail = format!(
                            "{} profile: {}",
                            profile.as_str(),
                            problems
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("; ")
                        );
                        let first = problems
                            .into_iter()
                            .next()
                            .unwrap_or(TokenError::Malformed("the claims were refused"));
                        self.fail_token("claims", Some(path), detail, first);
                        None
                    }
                }
            })
            .collect::<Vec<_>>();

        let inspector = match Inspector::open(self.directory_path) {
            Ok(Some(inspector)) => Some(inspector),
            Ok(None) => {
                let why = format!("no directory yet at {}", self.directory_path.display());
                self.skip("replay", None, why);
                None
            }
            Err(error) => {
                self.skip("replay", None, error.to_string());
                None
            }
        };
        if let (Some(inspector), Some(jti)) = (&inspector, &jti) {
            let fingerprint = replay::fingerprint(&key_id, jti.as_deref(), token);
            match inspector.token_used(&fingerprint, now) {
                Ok(true) => {
                    common_ok = false;
                    self.fail_token(
                        "replay",
                        None,
                        "this token was already used (each token signs in once: mint a new one per sign-in)".to_owned(),
                        TokenError::Replayed,
                    );
                }
                Ok(false) => self.pass("replay", None, "not used before".to_owned()),
                Err(error) => self.skip("replay", None, error.to_string()),
            }
        } else if inspector.is_some() {
            self.skip("replay", None, "the jti is invalid".to_owned());
        }

        let members = entries
            .iter()
            .zip(identities)
            .map(|(entry, identity)| {
                let identity = identity?;
                let path = entry.config().path.as_str();
                let id = self.member_step(inspector.as_ref(), entry.profile(), path, &identity)?;
                Some((identity, id))
            })
            .collect();
        Some(Verified { members, common_ok })
    }

    /// The `member` step for one entry: who would be signed in, and whether the directory lets them. `None` when
    /// the sign-in would be refused, else the id of the member the directory already has, if any.
    fn member_step(
        &mut self,
        inspector: Option<&Inspector>,
        profile: Profile,
        path: &str,
        identity: &Identity,
    ) -> Option<Option<String>> {
        let who = format!(
            "{} profile, sub {:?}, email {:?}, name {:?}",
            profile.as_str(),
            identity.sub,
            identity.email,
            identity.name
        );
        let Some(inspector) = inspector else {
            self.pass(
                "member",
                Some(path),
                format!("a new member (no directory yet): {who}"),
            );
            return Some(None);
        };
        match inspector.sign_in_preview(profile, identity) {
            Ok(SignInPreview::New) => {
                self.pass("member", Some(path), format!("a new member: {who}"));
                Some(None)
            }
            Ok(SignInPreview::Existing(member)) => {
                let mut detail = format!("existing member {}: {who}", member.id);
                if member.status != Status::Active {
                    let _ = write!(detail, "; status {} becomes active", member.status.as_str());
                }
                self.pass("member", Some(path), detail);
                Some(Some(member.id))
            }
            Ok(SignInPreview::Deactivated(member)) => {
                self.fail(
                    "member",
                    Some(path),
                    format!(
                        "member {} is deactivated: the sign-in would be refused; {who}",
                        member.id
                    ),
                    "member_refused",
                );
                None
            }
            Ok(SignInPreview::EmailTaken { member, other }) => {
                self.fail(
                    "member",
                    Some(path),
                    format!(
                        "member {} would take the email {:?}, which member {other} has: the sign-in would be refused",
                        member.id, identity.email
                    ),
                    "email_taken",
                );
                None
            }
            Err(error) => {
                self.pass(
                    "member",
                    Some(path),
                    format!("{who}; the directory could not be read: {error}"),
                );
                Some(None)
            }
        }
    }

    fn finish(self, outcome: Option<Verified>, entries: &[&Entry]) -> Report {
        let (members, common_ok) = match outcome {
            Some(verified) => (verified.members, verified.common_ok),
            None => (Vec::new(), false),
        };
        let mut member = None;
        let verdicts = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let signed_in = members.get(index).and_then(Option::as_ref);
                let accepted = common_ok && signed_in.is_some();
                if let (true, Some((identity, id)), None) = (accepted, signed_in, &member) {
                    member = Some(MemberReport {
                        id: id.clone(),
                        sub: identity.sub.clone(),
                        email: identity.email.clone(),
                        name: identity.name.clone(),
                        profile: entry.profile(),
                        entry: entry.config().path.clone(),
                    });
                }
                EntryVerdict {
                    path: entry.config().path.clone(),
                    profile: entry.profile(),
                    accepted,
                }
            })
            .collect::<Vec<_>>();
        Report {
            accepted: verdicts.iter().any(|v| v.accepted),
            steps: self.steps,
            entries: verdicts,
            member,
        }
    }

    fn key_list(&self) -> String {
        self.verifier
            .keys()
            .map(|key| format!("{} {}", key.id, alg_name(key.algorithm)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn describe_times(&self, times: token::TimeClaims, now: i64) -> String {
        let mut parts = Vec::new();
        if let Some(iat) = times.iat {
            parts.push(format!("iat {}", relative(iat, now)));
        }
        if let Some(nbf) = times.nbf {
            parts.push(format!("nbf {}", relative(nbf, now)));
        }
        match times.exp {
            Some(exp) => parts.push(format!("exp {}, at {}", relative(exp, now), timestamp(exp))),
            None => parts.push("no exp".to_owned()),
        }
        format!(
            "{}; leeway {} s, max_token_age {} s",
            parts.join(", "),
            self.verifier.leeway(),
            self.verifier.max_age()
        )
    }

    fn explain_time(&self, error: &TokenError, claims: &Map<String, Value>) -> String {
        let leeway = self.verifier.leeway();
        let max_age = self.verifier.max_age();
        let at = |name: &'static str| {
            token::numeric_date(claims, name)
                .ok()
                .flatten()
                .map_or_else(|| "?".to_owned(), timestamp)
        };
        match error {
            TokenError::Expired(ago) => {
                format!("expired {ago} s ago (exp {}, leeway {leeway} s)", at("exp"))
            }
            TokenError::NotYetValid(ahead) => format!(
                "not valid for another {ahead} s (nbf {}, leeway {leeway} s): if the minting server sets nbf to its \
now, this machine's clock and the minting server's differ by about {ahead} s",
                at("nbf")
            ),
            TokenError::IssuedInFuture(ahead) => format!(
                "iat is {ahead} s in the future: this machine's clock and the minting server's differ by about \
{ahead} s (iat {}, leeway {leeway} s)",
                at("iat")
            ),
            TokenError::TooOld(age) => format!(
                "issued {age} s ago (iat {}), over sso.max_token_age {max_age} s plus the leeway {leeway} s: mint \
a fresh token for each sign-in (or the clocks differ by that much)",
                at("iat")
            ),
            TokenError::LifetimeTooLong(life) => format!(
                "minted to live {life} s (exp - iat, or exp - now without iat), over sso.max_token_age {max_age} s: \
mint tokens with exp = iat + 60 s, as the platforms' docs recommend"
            ),
            TokenError::MissingExp if self.verifier.require_exp() => {
                "no exp claim, and sso.require_exp is true: mint tokens with exp (iat + 60 s)".to_owned()
            }
            TokenError::MissingExp => {
                "neither exp nor iat: nothing bounds the token's life (sso.danger_accept_tokens_without_expiry is \
false)"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl Report {
    /// One line per step, then the verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let label = match &step.entry {
                Some(entry) => format!("{} [{entry}]", step.step),
                None => step.step.to_owned(),
            };
            if step.skipped {
                let _ = writeln!(out, "{label}: not checked ({})", step.detail);
            } else if step.ok {
                let _ = writeln!(out, "{label}: ok ({})", step.detail);
            } else {
                let _ = writeln!(out, "{label}: FAIL: {}", step.detail);
            }
        }
        let verdicts = self
            .entries
            .iter()
            .map(|v| {
                format!(
                    "{} at {} ({})",
                    if v.accepted { "accepted" } else { "refused" },
                    v.path,
                    v.profile.as_str()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let _ = writeln!(
            out,
            "result: {}: {verdicts}",
            if self.accepted { "ACCEPTED" } else { "REFUSED" }
        );
        out
    }

    pub fn to_json(&self) -> Value {
        let steps = self
            .steps
            .iter()
            .map(|step| {
                let mut object = json!({"step": step.step, "ok": step.ok, "detail": step.detail});
                if let Some(entry) = &step.entry {
                    object["entry"] = json!(entry);
                }
                if let Some(code) = step.code {
                    object["code"] = json!(code);
                }
                if step.skipped {
                    object["skipped"] = json!(true);
                }
                object
            })
            .collect::<Vec<_>>();
        let entries = self
            .entries
            .iter()
            .map(|v| json!({"path": v.path, "profile": v.profile.as_str(), "accepted": v.accepted}))
            .collect::<Vec<_>>();
        let mut report = json!({"accepted": self.accepted, "steps": steps, "entries": entries});
        if let Some(member) = &self.member {
            report["member"] = json!({
                "id": member.id,
                "sub": member.sub,
                "email": member.email,
                "name": member.name,
                "profile": member.profile.as_str(),
                "entry": member.entry,
            });
        }
        report
    }
}

/// The refusal code the gateway's JSON error body carries for `error`.
fn code(error: TokenError) -> &'static str {
    Rejection::Token(error).code()
}

fn alg_name(algorithm: Algorithm) -> String {
    format!("{algorithm:?}")
}

/// A claim as the report shows it: its JSON, cut short.
fn shown_claim(value: Option<&Value>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(value) => {
            let text = value.to_string();
            if text.chars().count() > 200 {
                format!("{}…", text.chars().take(200).collect::<String>())
            } else {
                text
            }
        }
    }
}

/// RFC 3339 in UTC, e.g. 2026-11-23T10:00:00Z.
fn timestamp(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map_or_else(|_| format!("{unix} (out of range)"), |t| t.to_string())
}

fn relative(at: i64, now: i64) -> String {
    match at.saturating_sub(now) {
        0 => "now".to_owned(),
        ahead if ahead > 0 => format!("in {ahead} s"),
        behind => format!("{} s ago", behind.unsigned_abs()),
    }
}
