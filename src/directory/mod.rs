//! The member directory: who has signed in, with their profile and status.
//!
//! The store sits behind [`Directory`] so a PostgreSQL backend can join the embedded SQLite one. The sign-in rules
//! follow each platform's doc:
//!
//! - **tribe**: find the member by `sub`, else by email (then link the `sub`); create when absent; update the profile
//!   on every login.
//! - **meltingspot**: find the member by email; create when absent, else log in without updating anything. A changed
//!   email is a new member (MeltingSpot: "we will consider the user to be a new member").
//!
//! Each member has a stable gateway id (a random UUID) that never changes, whatever the token says later.

mod sqlite;

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::auth::Profile;
use crate::sso::claims::Identity;
use crate::sso::replay::Fingerprint;

pub use sqlite::{Inspector, SignInPreview, SqliteDirectory};

/// A member's standing, with the names the platforms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Invited,
    Pending,
    Declined,
    Rejected,
    Deactivated,
    Left,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Active,
        Status::Invited,
        Status::Pending,
        Status::Declined,
        Status::Rejected,
        Status::Deactivated,
        Status::Left,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Invited => "invited",
            Status::Pending => "pending",
            Status::Declined => "declined",
            Status::Rejected => "rejected",
            Status::Deactivated => "deactivated",
            Status::Left => "left",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// A member as the directory stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// The gateway's own id: stable for the member's whole life.
    pub id: String,
    /// The integrator's user id from the last token that identified this member.
    pub sub: String,
    pub email: String,
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub tagline: Option<String>,
    pub title: Option<String>,
    pub picture: Option<String>,
    pub lang: Option<String>,
    pub timezone: Option<String>,
    pub custom: Map<String, Value>,
    pub status: Status,
    /// The profile of the entry route that created the member.
    pub profile: &'static str,
    /// Spaces the member belongs to, and their role in each.
    pub spaces: Vec<SpaceMembership>,
    /// When the writer read this copy (a counter, not stored): of two copies, the higher is the more recent, so a
    /// cache never replaces a newer state with an older one that raced it.
    #[serde(skip)]
    pub revision: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: i64,
    pub login_count: i64,
}

/// A token being used: its fingerprint, and until when a second use must be refused (`None`: forever).
#[derive(Debug, Clone, Copy)]
pub struct TokenUse {
    pub fingerprint: Fingerprint,
    pub until: Option<i64>,
}

/// The outcome of a sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub member: Member,
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    #[error("cannot open the directory at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create the directory's folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("directory database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A Tribe login would move this member's email onto an address another member already has.
    #[error("email belongs to another member")]
    EmailTaken,
    #[error("the directory has stopped")]
    Stopped,
    /// The token was used before (the durable replay record, which survives restarts).
    #[error("token was already used")]
    Replayed,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The file's schema is not the one this build writes (an older file no gateway has migrated yet, or a newer
    /// one); only a read-only look refuses it, since opening for writing migrates.
    #[error(
        "the directory's schema is version {found}, this ssogate uses version {expected} (a gateway of this version migrates it when it starts)"
    )]
    OtherVersion { found: i64, expected: usize },
}

/// A session being opened, recorded with the sign-in so an operator can list and end it.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub expires: i64,
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A session as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub revoked: bool,
}

/// One line of the audit trail: who did what to whom, when, from where.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub at: i64,
    /// `sso` (a sign-in), `member` (a sign-out) or `admin`.
    pub actor: String,
    pub action: String,
    pub member_id: Option<String>,
    pub detail: Value,
    pub address: Option<String>,
}

/// A member's place in a space (Tribe's spaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpaceMembership {
    pub space_id: String,
    /// `member` or `admin`.
    pub role: String,
}

/// Which members to list.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub email: Option<String>,
    pub sub: Option<String>,
    pub status: Option<Status>,
    pub limit: i64,
}

/// The directory handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Directory {
    store: SqliteDirectory,
}

impl Directory {
    /// Opens (creating and migrating when needed) the SQLite directory at `path`.
    pub fn open_sqlite(path: &Path) -> Result<Self, DirectoryError> {
        Ok(Self {
            store: SqliteDirectory::open(path)?,
        })
    }

    /// Records the token's use (refusing a replay), then finds, creates or updates the member `identity`
    /// describes by `profile`'s rules, applies their spaces, records the session and the login, all in one
    /// transaction. A deactivated member comes back unchanged, for the caller to refuse.
    pub async fn sign_in(
        &self,
        profile: Profile,
        identity: Identity,
        token: TokenUse,
        session: Option<NewSession>,
        now: i64,
    ) -> Result<SignIn, DirectoryError> {
        self.store
            .run(move |tx| sqlite::sign_in(tx, profile, &identity, &token, session.as_ref(), now))
            .await
    }

    /// Forgets used tokens, ended sessions and issued sessions whose expiry has passed (in the background).
    pub fn sweep(&self, now: i64) {
        self.store.spawn(move |tx| sqlite::sweep(tx, now));
    }

    pub async fn member(&self, id: &str) -> Result<Option<Member>, DirectoryError> {
        let id = id.to_owned();
        self.store
            .run(move |tx| sqlite::find(tx, "id = ?1", &id))
            .await
    }

    pub async fn member_count(&self) -> Result<i64, DirectoryError> {
        self.store
            .run(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM members", [], |row| row.get(0))?))
            .await
    }

    /// Sessions issued that are neither expired nor ended (for the `sessions_active` metric).
    pub async fn active_sessions(&self, now: i64) -> Result<i64, DirectoryError> {
        self.store
            .run(move |tx| sqlite::active_sessions(tx, now))
            .await
    }

    /// Commits a one-row write: `Ok` means the directory can record sign-ins right now.
    pub async fn check_writable(&self, now: i64) -> Result<(), DirectoryError> {
        self.store
            .run(move |tx| sqlite::touch_health(tx, now))
            .await
    }

    pub async fn members(&self, filter: MemberFilter) -> Result<Vec<Member>, DirectoryError> {
        self.store.run(move |tx| sqlite::list(tx, &filter)).await
    }

    /// A member's sign-out: the session is ended durably (a restart must not bring it back).
    pub async fn sign_out(
        &self,
        session_id: &str,
        member_id: &str,
        until: i64,
        now: i64,
    ) -> Result<(), DirectoryError> {
        let (session_id, member_id) = (session_id.to_owned(), member_id.to_owned());
        self.store
            .run(move |tx| {
                sqlite::revoke(tx, &session_id, &member_id, until)?;
                sqlite::audit(
                    tx,
                    now,
                    "member",
                    "sign_out",
                    Some(&member_id),
                    &serde_json::json!({"session": session_id}),
                    None,
                )
            })
            .await
    }

    /// Sessions ended before and not yet expired, with their expiry.
    pub async fn revoked(&self, now: i64) -> Result<Vec<(String, i64)>, DirectoryError> {
        self.store.run(move |tx| sqlite::revoked(tx, now)).await
    }

    /// An administrator changes a member's status. Deactivation also ends every live session of the member;
    /// those are returned (id, expiry). `None` when there is no such member.
    pub async fn set_status(
        &self,
        id: &str,
        status: Status,
        admin_address: Option<String>,
        now: i64,
    ) -> Result<Option<(Member, Vec<(String, i64)>)>, DirectoryError> {
        let id = id.to_owned();
        self.store
            .run(move |tx| {
                let Some(before) = sqlite::find(tx, "id = ?1", &id)? else { return Ok(None) };
                sqlite::set_status(tx, &id, status, now)?;
                let ended = if status == Status::Deactivated { sqlite::revoke_all(tx, &id, now)? } else { Vec::new() };
                let detail = serde_json::json!({"from": before.status.as_str(), "to": status.as_str(), "sessions_ended": ended.len()});
                sqlite::audit(tx, now, "admin", "status_changed", Some(&id), &detail, admin_address.as_deref())?;
                let member = sqlite::find(tx, "id = ?1", &id)?;
                Ok(member.map(|member| (member, ended)))
            })
            .await
    }

    /// A member's sessions that have not expired (ended ones included, marked).
    pub async fn sessions(
        &self,
        member_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, DirectoryError> {
        let member_id = member_id.to_owned();
        self.store
            .run(move |tx| sqlite::sessions_of(tx, &member_id, now))
            .await
    }

    /// An administrator ends all of a member's sessions; returns them (id, expiry).
    pub async fn end_sessions(
        &self,
        member_id: &str,
        admin_address: Option<String>,
        now: i64,
    ) -> Result<Vec<(String, i64)>, DirectoryError> {
        let member_id = member_id.to_owned();
        self.store
            .run(move |tx| {
                let ended = sqlite::revoke_all(tx, &member_id, now)?;
                let detail = serde_json::json!({"sessions_ended": ended.len()});
                sqlite::audit(
                    tx,
                    now,
                    "admin",
                    "sessions_ended",
                    Some(&member_id),
                    &detail,
                    admin_address.as_deref(),
                )?;
                Ok(ended)
            })
            .await
    }

    /// An administrator ends one session; returns its member and expiry, `None` when there is no such session.
    pub async fn end_session(
        &self,
        session_id: &str,
        admin_address: Option<String>,
        now: i64,
    ) -> Result<Option<(String, i64, bool)>, DirectoryError> {
        let session_id = session_id.to_owned();
        self.store
            .run(move |tx| {
                let Some((member_id, until)) = sqlite::session(tx, &session_id)? else {
                    return Ok(None);
                };
                let already: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE id = ?1)",
                    [&session_id],
                    |row| row.get(0),
                )?;
                if already || until <= now {
                    // Ended or expired already: nothing to do, and nothing to add to the audit trail.
                    return Ok(Some((member_id, until, false)));
                }
                sqlite::revoke(tx, &session_id, &member_id, until)?;
                let detail = serde_json::json!({"session": session_id});
                sqlite::audit(
                    tx,
                    now,
                    "admin",
                    "session_ended",
                    Some(&member_id),
                    &detail,
                    admin_address.as_deref(),
                )?;
                Ok(Some((member_id, until, true)))
            })
            .await
    }

    /// The most recent audit events, newest first.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditEvent>, DirectoryError> {
        self.store
            .run(move |tx| sqlite::audit_events(tx, limit))
            .await
    }
}

/// Emails are matched without regard to case; the address is stored as given.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A random (version 4) UUID: the member's gateway id.
pub fn new_member_id() -> String {
    let mut bytes = crate::session::random_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
