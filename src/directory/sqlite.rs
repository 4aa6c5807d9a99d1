//! The embedded SQLite directory: one writer thread that commits in batches, WAL mode.
//!
//! SQLite allows one writer at a time, so every query goes through one thread that owns the connection. The thread
//! takes whatever work has queued up and runs it in one transaction (each piece in its own savepoint, so one failure
//! does not undo the others): under load a single commit carries many logins. A caller hears back only after the
//! commit, so an answered login is on disk, and WAL with `synchronous=NORMAL` keeps committed data through a crash
//! of the process (`kill -9`); only a power cut can lose the last few commits.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{
    AuditEvent, DirectoryError, Member, MemberFilter, NewSession, SessionRecord, SignIn,
    SpaceMembership, Status, TokenUse, email_key, new_member_id,
};
use crate::config::auth::Profile;
use crate::sso::claims::{Identity, SpaceAction, SpaceRole, SpacesOperation};
use crate::sso::replay::Fingerprint;

/// Pieces of work taken into one transaction at most.
const MAX_BATCH: usize = 512;

const SCHEMA: &[&str] = &[
    // Version 1.
    "CREATE TABLE members (
        id            TEXT PRIMARY KEY,
        sub           TEXT NOT NULL,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL,
        first_name    TEXT,
        last_name     TEXT,
        tagline       TEXT,
        title         TEXT,
        picture       TEXT,
        lang          TEXT,
        timezone      TEXT,
        custom        TEXT NOT NULL DEFAULT '{}',
        status        TEXT NOT NULL DEFAULT 'active',
        profile       TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        last_login_at INTEGER NOT NULL,
        login_count   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX members_sub ON members (sub);
    CREATE TABLE used_tokens (
        fingerprint BLOB PRIMARY KEY,
        used_at     INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // Version 2: every used token is recorded until it expires (NULL: forever), so a restart forgets no replay.
    "ALTER TABLE used_tokens ADD COLUMN until INTEGER;
    CREATE INDEX used_tokens_until ON used_tokens (until);",
    // Version 3: ended sessions, kept until their cookie would have expired anyway.
    "CREATE TABLE revoked_sessions (
        id        TEXT PRIMARY KEY,
        member_id TEXT NOT NULL,
        until     INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // Version 4: spaces (Tribe's), every session issued (so an admin can list and end them), the audit trail.
    "CREATE TABLE member_spaces (
        member_id TEXT NOT NULL,
        space_id  TEXT NOT NULL,
        role      TEXT NOT NULL,
        since     INTEGER NOT NULL,
        PRIMARY KEY (member_id, space_id)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        member_id  TEXT NOT NULL,
        issued_at  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        address    TEXT,
        user_agent TEXT
    ) WITHOUT ROWID;
    CREATE INDEX sessions_member ON sessions (member_id);
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        member_id TEXT,
        detail    TEXT NOT NULL DEFAULT '{}',
        address   TEXT
    );
    CREATE INDEX audit_member ON audit (member_id);",
    // Version 5: one row the readiness check rewrites, so `/readyz` proves a commit reaches the disk.
    "CREATE TABLE health (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        checked_at INTEGER NOT NULL
    );",
];

const MEMBER_COLUMNS: &str = "id, sub, email, name, first_name, last_name, tagline, title, picture, lang, timezone, \
custom, status, profile, created_at, updated_at, last_login_at, login_count";

/// Work for the writer thread. It runs inside the batch's transaction and returns what to do once the batch has
/// committed (`None`) or failed to (`Some(error)`): answering only then is what makes an answer mean "on disk".
type Work = Box<dyn FnOnce(&Connection) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// Handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SqliteDirectory {
    jobs: mpsc::Sender<Work>,
}

impl SqliteDirectory {
    pub fn open(path: &Path) -> Result<Self, DirectoryError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| DirectoryError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        let open_error = |source| DirectoryError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        // 64 MiB of page cache keeps the member and session indexes in memory as the directory grows, and a
        // larger WAL before each automatic checkpoint means fewer, bigger checkpoints on the writer thread.
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(open_error)?;
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(open_error)?;
        // Each piece of work runs in a savepoint, whose sub-journal is a temporary file unless told otherwise.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        // The bundled SQLite has STAT4, which re-prepares a cached statement whenever a new bound value might change
        // its plan: on this hot path, at every login. The query planner stability guarantee keeps plans fixed.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        migrate(&mut conn).map_err(open_error)?;

        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("ssogate-directory".into())
            .spawn(move || writer(&mut conn, &queue))
            .map_err(|source| DirectoryError::Folder {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { jobs })
    }

    /// Runs `work` on the writer thread, in its own savepoint of the next batch, and answers after the commit.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, DirectoryError> + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let (reply, answer) = oneshot::channel();
        let job: Work = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, work);
            Box::new(move |failed: Option<&str>| {
                let result = match failed {
                    None => result,
                    Some(error) => Err(DirectoryError::Corrupt(format!("commit failed: {error}"))),
                };
                // A caller that went away (client hung up) just does not hear the answer; the change stands.
                let _ = reply.send(result);
            })
        });
        self.jobs.send(job).map_err(|_| DirectoryError::Stopped)?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    /// Like [`Self::run`], without waiting for (or hearing) the answer.
    pub fn spawn(
        &self,
        work: impl FnOnce(&Connection) -> Result<(), DirectoryError> + Send + 'static,
    ) {
        let job: Work = Box::new(move |conn: &Connection| {
            if let Err(error) = in_savepoint(conn, work) {
                tracing::warn!(error = %error, "directory: background work failed");
            }
            Box::new(|_: Option<&str>| {})
        });
        let _ = self.jobs.send(job);
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let done = usize::try_from(version).unwrap_or(0);
    for (index, step) in SCHEMA.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The writer loop: take a batch, run it in one transaction, answer after the commit.
fn writer(conn: &mut Connection, queue: &mpsc::Receiver<Work>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = statement(conn, "BEGIN IMMEDIATE");
        if let Err(error) = &began {
            tracing::error!(error = %error, "directory: cannot begin a transaction");
        }
        let finishes: Vec<Finish> = batch.into_iter().map(|work| work(conn)).collect();
        let committed = began.and_then(|()| statement(conn, "COMMIT"));
        let failure = committed.err().map(|error| {
            tracing::error!(error = %error, "directory: commit failed; the batch's changes are lost and reported");
            let _ = conn.execute_batch("ROLLBACK");
            error.to_string()
        });
        for finish in finishes {
            finish(failure.as_deref());
        }
    }
}

/// Runs `work` in a savepoint: on error, just its own changes are rolled back.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, DirectoryError>,
) -> Result<T, DirectoryError> {
    statement(conn, "SAVEPOINT job")?;
    let result = work(conn);
    if result.is_err() {
        statement(conn, "ROLLBACK TO job")?;
    }
    statement(conn, "RELEASE job")?;
    result
}

/// The writer is the only thread that reads or writes members, so this counter orders every copy it hands out.
fn next_revision() -> u64 {
    static REVISION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs one cached statement: the writer repeats the same few thousands of times a second, so none is re-parsed.
fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Signs a member in: the token's use, the member (found, created or updated by the profile's rules), their spaces,
/// the new session and the audit line, all in one savepoint.
pub(super) fn sign_in(
    tx: &Connection,
    profile: Profile,
    identity: &Identity,
    token: &TokenUse,
    session: Option<&NewSession>,
    now: i64,
) -> Result<SignIn, DirectoryError> {
    use_token(tx, token, now)?;
    let key = email_key(&identity.email);
    let existing = existing_member(tx, profile, identity, &key)?;
    let address = session.and_then(|s| s.address.as_deref());
    let (mut member, created) = match existing {
        None => (create(tx, profile, identity, &key, now)?, true),
        Some(member) if member.status == Status::Deactivated => {
            // Refused: nothing about the member changes, but the attempt is on record.
            audit(
                tx,
                now,
                "sso",
                "sign_in_refused",
                Some(&member.id),
                &serde_json::json!({"status": "deactivated"}),
                address,
            )?;
            return Ok(SignIn {
                member,
                created: false,
            });
        }
        Some(mut member) => {
            if member.status != Status::Active {
                // MeltingSpot: members who come in through SSO are accepted, whatever their standing was.
                let detail = serde_json::json!({"from": member.status.as_str(), "to": "active"});
                tx.prepare_cached("UPDATE members SET status = 'active' WHERE id = ?1")?
                    .execute([&member.id])?;
                audit(
                    tx,
                    now,
                    "sso",
                    "status_changed",
                    Some(&member.id),
                    &detail,
                    address,
                )?;
                member.status = Status::Active;
            }
            update(tx, profile, identity, &key, &mut member, now)?;
            (member, false)
        }
    };
    let names_spaces = !identity.spaces.space_ids.is_empty() || !identity.spaces.spaces.is_empty();
    if profile == Profile::Tribe
        && (names_spaces || identity.spaces.operation == SpacesOperation::Replace)
    {
        apply_spaces(tx, &member.id, identity, now)?;
    }
    // A new member the token gave no spaces has none: no need to ask.
    if !created || names_spaces {
        member.spaces = spaces_of(tx, &member.id)?;
    }
    if let Some(session) = session {
        tx.prepare_cached(
            "INSERT INTO sessions (id, member_id, issued_at, expires_at, address, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![session.id, member.id, now, session.expires, session.address, session.user_agent])?;
    }
    audit(
        tx,
        now,
        "sso",
        "sign_in",
        Some(&member.id),
        &serde_json::json!({"profile": profile.as_str(), "created": created, "sub": identity.sub}),
        address,
    )?;
    Ok(SignIn { member, created })
}

/// The member a sign-in applies to, by the profile's rules (see the module doc of `directory`).
fn existing_member(
    tx: &Connection,
    profile: Profile,
    identity: &Identity,
    key: &str,
) -> Result<Option<Member>, DirectoryError> {
    match profile {
        Profile::Tribe => match find(
            tx,
            "sub = ?1 ORDER BY last_login_at DESC LIMIT 1",
            &identity.sub,
        )? {
            Some(member) => Ok(Some(member)),
            None => find(tx, "email_key = ?1", key),
        },
        Profile::MeltingSpot => find(tx, "email_key = ?1", key),
    }
}

/// The other member that already has the email `key`, when a Tribe login would move `member` onto it.
fn email_taken_by(
    tx: &Connection,
    member: &Member,
    key: &str,
) -> Result<Option<String>, DirectoryError> {
    if email_key(&member.email) == key {
        return Ok(None);
    }
    let taken: Option<String> = tx
        .query_row(
            "SELECT id FROM members WHERE email_key = ?1",
            [key],
            |row| row.get(0),
        )
        .optional()?;
    Ok(taken.filter(|other| *other != member.id))
}

/// Tribe updates the profile on every login; MeltingSpot only records the login.
fn update(
    tx: &Connection,
    profile: Profile,
    identity: &Identity,
    key: &str,
    member: &mut Member,
    now: i64,
) -> Result<(), DirectoryError> {
    if profile == Profile::Tribe {
        if email_taken_by(tx, member, key)?.is_some() {
            return Err(DirectoryError::EmailTaken);
        }
        let unchanged = member.sub == identity.sub
            && member.email == identity.email
            && member.name == identity.name
            && member.tagline == identity.tagline
            && member.picture == identity.picture
            && member.custom == identity.custom;
        if unchanged {
            // Most logins change nothing: record the login without rewriting the indexed columns.
            tx.prepare_cached("UPDATE members SET last_login_at = ?2, login_count = login_count + 1 WHERE id = ?1")?
                .execute(params![member.id, now])?;
            member.last_login_at = now;
            member.login_count += 1;
            return Ok(());
        }
        let custom = Value::Object(identity.custom.clone()).to_string();
        tx.prepare_cached(
            "UPDATE members SET sub = ?2, email = ?3, email_key = ?4, name = ?5, tagline = ?6, picture = ?7,
                custom = ?8, updated_at = ?9, last_login_at = ?9, login_count = login_count + 1
             WHERE id = ?1",
        )?
        .execute(params![
            member.id,
            identity.sub,
            identity.email,
            key,
            identity.name,
            identity.tagline,
            identity.picture,
            custom,
            now
        ])?;
        member.sub.clone_from(&identity.sub);
        member.email.clone_from(&identity.email);
        member.name.clone_from(&identity.name);
        member.tagline.clone_from(&identity.tagline);
        member.picture.clone_from(&identity.picture);
        member.custom.clone_from(&identity.custom);
        member.updated_at = now;
    } else {
        tx.prepare_cached(
            "UPDATE members SET last_login_at = ?2, login_count = login_count + 1 WHERE id = ?1",
        )?
        .execute(params![member.id, now])?;
    }
    member.last_login_at = now;
    member.login_count += 1;
    member.revision = next_revision();
    Ok(())
}

fn create(
    tx: &Connection,
    profile: Profile,
    identity: &Identity,
    key: &str,
    now: i64,
) -> Result<Member, DirectoryError> {
    let member = Member {
        id: new_member_id(),
        sub: identity.sub.clone(),
        email: identity.email.clone(),
        name: identity.name.clone(),
        first_name: identity.first_name.clone(),
        last_name: identity.last_name.clone(),
        tagline: identity.tagline.clone(),
        title: identity.title.clone(),
        picture: identity.picture.clone(),
        lang: identity.lang.clone(),
        timezone: identity.timezone.clone(),
        custom: identity.custom.clone(),
        status: Status::Active,
        profile: profile.as_str(),
        spaces: Vec::new(),
        revision: next_revision(),
        created_at: now,
        updated_at: now,
        last_login_at: now,
        login_count: 1,
    };
    tx.prepare_cached(
        "INSERT INTO members (id, sub, email, email_key, name, first_name, last_name, tagline, title, picture, lang,
            timezone, custom, status, profile, created_at, updated_at, last_login_at, login_count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16, ?16, 1)",
    )?
    .execute(params![
        member.id,
        member.sub,
        member.email,
        key,
        member.name,
        member.first_name,
        member.last_name,
        member.tagline,
        member.title,
        member.picture,
        member.lang,
        member.timezone,
        Value::Object(member.custom.clone()).to_string(),
        member.status.as_str(),
        member.profile,
        now
    ])?;
    Ok(member)
}

/// Tribe's space claims: `REPLACE` first removes the member from every space; then `spaceIds` joins as MEMBER
/// (keeping a higher role the member already has); then `spaces` items apply in order, their `action` deciding, so
/// an item in `spaces` wins over the same space in `spaceIds` (Tribe: "the action field is the determinant").
fn apply_spaces(
    tx: &Connection,
    member_id: &str,
    identity: &Identity,
    now: i64,
) -> Result<(), DirectoryError> {
    let claims = &identity.spaces;
    let mentioned = !claims.space_ids.is_empty() || !claims.spaces.is_empty();
    if claims.operation == SpacesOperation::Replace && mentioned {
        tx.prepare_cached("DELETE FROM member_spaces WHERE member_id = ?1")?
            .execute([member_id])?;
    }
    for space in &claims.space_ids {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO member_spaces (member_id, space_id, role, since) VALUES (?1, ?2, 'member', ?3)",
        )?
        .execute(params![member_id, space, now])?;
    }
    for change in &claims.spaces {
        match change.action {
            SpaceAction::Join => {
                let role = match change.role {
                    SpaceRole::Member => "member",
                    SpaceRole::Admin => "admin",
                };
                tx.prepare_cached(
                    "INSERT INTO member_spaces (member_id, space_id, role, since) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (member_id, space_id) DO UPDATE SET role = excluded.role",
                )?
                .execute(params![member_id, change.space_id, role, now])?;
            }
            SpaceAction::Leave => {
                tx.prepare_cached(
                    "DELETE FROM member_spaces WHERE member_id = ?1 AND space_id = ?2",
                )?
                .execute(params![member_id, change.space_id])?;
            }
        }
    }
    Ok(())
}

fn spaces_of(tx: &Connection, member_id: &str) -> Result<Vec<SpaceMembership>, DirectoryError> {
    let mut statement = tx.prepare_cached(
        "SELECT space_id, role FROM member_spaces WHERE member_id = ?1 ORDER BY space_id",
    )?;
    let rows = statement.query_map([member_id], |row| {
        Ok(SpaceMembership {
            space_id: row.get(0)?,
            role: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// When a `used_tokens` row (fingerprint ?1) still refuses a second use at ?2 (now): the one rule shared by the
/// sign-in, which records a use, and [`Inspector::token_used`], which only looks.
macro_rules! still_remembered {
    () => {
        "(used_tokens.until IS NULL OR used_tokens.until >= ?2)"
    };
}

/// Records the token's use; `Replayed` when it was used before and is still remembered. One statement: insert, or
/// take over a row whose token has expired; no change means the token is still remembered.
fn use_token(tx: &Connection, token: &TokenUse, now: i64) -> Result<(), DirectoryError> {
    let changed = tx
        .prepare_cached(concat!(
            "INSERT INTO used_tokens (fingerprint, used_at, until) VALUES (?1, ?2, ?3)
             ON CONFLICT (fingerprint) DO UPDATE SET used_at = excluded.used_at, until = excluded.until
             WHERE NOT ",
            still_remembered!()
        ))?
        .execute(params![&token.fingerprint[..], now, token.until])?;
    if changed == 0 {
        return Err(DirectoryError::Replayed);
    }
    Ok(())
}

pub(super) fn revoked(tx: &Connection, now: i64) -> Result<Vec<(String, i64)>, DirectoryError> {
    let mut statement =
        tx.prepare_cached("SELECT id, until FROM revoked_sessions WHERE until >= ?1")?;
    let rows = statement.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn revoke(
    tx: &Connection,
    session_id: &str,
    member_id: &str,
    until: i64,
) -> Result<(), DirectoryError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO revoked_sessions (id, member_id, until) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![session_id, member_id, until])?;
    Ok(())
}

/// Ends every live session of a member; returns them (id, expiry) for the in-memory list.
pub(super) fn revoke_all(
    tx: &Connection,
    member_id: &str,
    now: i64,
) -> Result<Vec<(String, i64)>, DirectoryError> {
    let live: Vec<(String, i64)> = {
        let mut statement = tx.prepare_cached(
            "SELECT id, expires_at FROM sessions WHERE member_id = ?1 AND expires_at > ?2
               AND id NOT IN (SELECT id FROM revoked_sessions)",
        )?;
        let rows = statement.query_map(params![member_id, now], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for (id, until) in &live {
        revoke(tx, id, member_id, *until)?;
    }
    Ok(live)
}

pub(super) fn sweep(tx: &Connection, now: i64) -> Result<(), DirectoryError> {
    tx.prepare_cached("DELETE FROM used_tokens WHERE until IS NOT NULL AND until < ?1")?
        .execute([now])?;
    tx.prepare_cached("DELETE FROM revoked_sessions WHERE until < ?1")?
        .execute([now])?;
    tx.prepare_cached("DELETE FROM sessions WHERE expires_at < ?1")?
        .execute([now])?;
    Ok(())
}

/// Sessions issued that are neither expired nor ended.
pub(super) fn active_sessions(tx: &Connection, now: i64) -> Result<i64, DirectoryError> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM sessions s WHERE s.expires_at > ?1 \
             AND NOT EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.id = s.id)",
        )?
        .query_row([now], |row| row.get(0))?)
}

/// A write that must reach the disk for the readiness check to pass.
pub(super) fn touch_health(tx: &Connection, now: i64) -> Result<(), DirectoryError> {
    tx.prepare_cached(
        "INSERT INTO health (id, checked_at) VALUES (1, ?1) \
         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
    )?
    .execute([now])?;
    Ok(())
}

pub(super) fn audit(
    tx: &Connection,
    now: i64,
    actor: &str,
    action: &str,
    member_id: Option<&str>,
    detail: &Value,
    address: Option<&str>,
) -> Result<(), DirectoryError> {
    tx.prepare_cached(
        "INSERT INTO audit (at, actor, action, member_id, detail, address) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now, actor, action, member_id, detail.to_string(), address])?;
    Ok(())
}

pub(super) fn audit_events(tx: &Connection, limit: i64) -> Result<Vec<AuditEvent>, DirectoryError> {
    let mut statement = tx.prepare_cached(
        "SELECT at, actor, action, member_id, detail, address FROM audit ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([limit], |row| {
        let detail: String = row.get(4)?;
        Ok(AuditEvent {
            at: row.get(0)?,
            actor: row.get(1)?,
            action: row.get(2)?,
            member_id: row.get(3)?,
            detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
            address: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn sessions_of(
    tx: &Connection,
    member_id: &str,
    now: i64,
) -> Result<Vec<SessionRecord>, DirectoryError> {
    let mut statement = tx.prepare_cached(
        "SELECT s.id, s.issued_at, s.expires_at, s.address, s.user_agent, r.id IS NOT NULL
           FROM sessions s LEFT JOIN revoked_sessions r ON r.id = s.id
          WHERE s.member_id = ?1 AND s.expires_at > ?2 ORDER BY s.issued_at DESC",
    )?;
    let rows = statement.query_map(params![member_id, now], |row| {
        Ok(SessionRecord {
            id: row.get(0)?,
            issued_at: row.get(1)?,
            expires_at: row.get(2)?,
            address: row.get(3)?,
            user_agent: row.get(4)?,
            revoked: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The member a session belongs to, and its expiry.
pub(super) fn session(
    tx: &Connection,
    session_id: &str,
) -> Result<Option<(String, i64)>, DirectoryError> {
    Ok(tx
        .prepare_cached("SELECT member_id, expires_at FROM sessions WHERE id = ?1")?
        .query_row([session_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

pub(super) fn set_status(
    tx: &Connection,
    id: &str,
    status: Status,
    now: i64,
) -> Result<bool, DirectoryError> {
    let changed = tx
        .prepare_cached("UPDATE members SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, status.as_str(), now])?;
    Ok(changed == 1)
}

pub(super) fn list(tx: &Connection, filter: &MemberFilter) -> Result<Vec<Member>, DirectoryError> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM members
          WHERE (?1 IS NULL OR email_key = ?1) AND (?2 IS NULL OR sub = ?2) AND (?3 IS NULL OR status = ?3)
          ORDER BY created_at, id LIMIT ?4"
    );
    let email = filter.email.as_deref().map(email_key);
    let status = filter.status.map(Status::as_str);
    let mut statement = tx.prepare_cached(&sql)?;
    let raws = statement
        .query_map(params![email, filter.sub, status, filter.limit], row_to_raw)?
        .collect::<Result<Vec<_>, _>>()?;
    drop(statement);
    raws.into_iter()
        .map(|raw| {
            let mut member = raw.into_member()?;
            member.spaces = spaces_of(tx, &member.id)?;
            Ok(member)
        })
        .collect()
}

pub(super) fn find(
    tx: &Connection,
    condition: &str,
    value: &str,
) -> Result<Option<Member>, DirectoryError> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE {condition}");
    let row = tx
        .prepare_cached(&sql)?
        .query_row([value], row_to_raw)
        .optional()?;
    let Some(raw) = row else { return Ok(None) };
    let mut member = raw.into_member()?;
    member.spaces = spaces_of(tx, &member.id)?;
    Ok(Some(member))
}

/// A row as SQLite gives it, before the text columns are parsed.
struct RawMember {
    member: Member,
    custom: String,
    status: String,
    profile: String,
}

fn row_to_raw(row: &Row<'_>) -> rusqlite::Result<RawMember> {
    Ok(RawMember {
        member: Member {
            id: row.get(0)?,
            sub: row.get(1)?,
            email: row.get(2)?,
            name: row.get(3)?,
            first_name: row.get(4)?,
            last_name: row.get(5)?,
            tagline: row.get(6)?,
            title: row.get(7)?,
            picture: row.get(8)?,
            lang: row.get(9)?,
            timezone: row.get(10)?,
            custom: Map::new(),
            status: Status::Active,
            profile: "tribe",
            spaces: Vec::new(),
            revision: next_revision(),
            created_at: row.get(14)?,
            updated_at: row.get(15)?,
            last_login_at: row.get(16)?,
            login_count: row.get(17)?,
        },
        custom: row.get(11)?,
        status: row.get(12)?,
        profile: row.get(13)?,
    })
}

impl RawMember {
    fn into_member(self) -> Result<Member, DirectoryError> {
        let mut member = self.member;
        member.custom = match serde_json::from_str(&self.custom) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(DirectoryError::Corrupt(format!(
                    "member {}: custom fields",
                    member.id
                )));
            }
        };
        member.status = Status::parse(&self.status).ok_or_else(|| {
            DirectoryError::Corrupt(format!("member {}: status {:?}", member.id, self.status))
        })?;
        member.profile = match self.profile.as_str() {
            "meltingspot" => Profile::MeltingSpot.as_str(),
            _ => Profile::Tribe.as_str(),
        };
        Ok(member)
    }
}

/// What a sign-in would do with an identity, worked out without changing anything.
#[derive(Debug, Clone)]
pub enum SignInPreview {
    /// No member matches: a new one would be created.
    New,
    /// This member would be signed in (one whose status is not active, nor deactivated, would be made active).
    Existing(Member),
    /// This member is deactivated: the sign-in would be refused.
    Deactivated(Member),
    /// A Tribe sign-in would move this member's email onto the address of the member with id `other`: refused.
    EmailTaken { member: Member, other: String },
}

/// A read-only connection to a directory file, for `ssogate token check`.
///
/// It never writes: the file is opened read-only with `query_only` on, and never migrated. A gateway may be running
/// on the same file; in WAL mode its commits are visible here and this reader does not block it.
#[derive(Debug)]
pub struct Inspector {
    conn: Connection,
}

impl Inspector {
    /// Opens the directory at `path`; `None` when there is no file there (no gateway has run with it yet).
    pub fn open(path: &Path) -> Result<Option<Self>, DirectoryError> {
        if !path.exists() {
            return Ok(None);
        }
        let open_error = |source| DirectoryError::Open {
            path: path.display().to_string(),
            source,
        };
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_error)?;
        if usize::try_from(version).ok() != Some(SCHEMA.len()) {
            return Err(DirectoryError::OtherVersion {
                found: version,
                expected: SCHEMA.len(),
            });
        }
        Ok(Some(Self { conn }))
    }

    /// Whether the token with this fingerprint was used and is still remembered (a sign-in would be a replay).
    pub fn token_used(&self, fingerprint: &Fingerprint, now: i64) -> Result<bool, DirectoryError> {
        let found = self
            .conn
            .prepare(concat!(
                "SELECT 1 FROM used_tokens WHERE fingerprint = ?1 AND ",
                still_remembered!()
            ))?
            .query_row(params![&fingerprint[..], now], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    /// What signing `identity` in through a `profile` entry would do, by the same lookups as the sign-in.
    pub fn sign_in_preview(
        &self,
        profile: Profile,
        identity: &Identity,
    ) -> Result<SignInPreview, DirectoryError> {
        let key = email_key(&identity.email);
        let Some(member) = existing_member(&self.conn, profile, identity, &key)? else {
            return Ok(SignInPreview::New);
        };
        if member.status == Status::Deactivated {
            return Ok(SignInPreview::Deactivated(member));
        }
        if profile == Profile::Tribe {
            if let Some(other) = email_taken_by(&self.conn, &member, &key)? {
                return Ok(SignInPreview::EmailTaken { member, other });
            }
        }
        Ok(SignInPreview::Existing(member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Directory;

    fn identity(sub: &str, email: &str, name: &str) -> Identity {
        Identity {
            sub: sub.into(),
            email: email.into(),
            name: name.into(),
            ..Identity::default()
        }
    }

    /// A token never seen before.
    fn fresh() -> crate::directory::TokenUse {
        let mut fingerprint = [0u8; 32];
        aws_lc_rs::rand::fill(&mut fingerprint).unwrap();
        crate::directory::TokenUse {
            fingerprint,
            until: Some(i64::MAX),
        }
    }

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ssogate-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("nested/ssogate.db")
    }

    #[tokio::test]
    async fn inspector_sees_what_a_sign_in_would_do_and_changes_nothing() {
        let path = temp_db("inspect");
        assert!(Inspector::open(&path).unwrap().is_none(), "no file yet");
        assert!(!path.exists(), "looking must not create the file");
        let directory = Directory::open_sqlite(&path).unwrap();
        let used = fresh();
        let ada = directory
            .sign_in(
                Profile::Tribe,
                identity("1", "ada@example.com", "Ada"),
                used,
                None,
                100,
            )
            .await
            .unwrap()
            .member;
        directory
            .sign_in(
                Profile::Tribe,
                identity("2", "bob@example.com", "Bob"),
                fresh(),
                None,
                100,
            )
            .await
            .unwrap();
        let inspector = Inspector::open(&path).unwrap().unwrap();
        assert!(inspector.token_used(&used.fingerprint, 200).unwrap());
        assert!(!inspector.token_used(&fresh().fingerprint, 200).unwrap());
        let preview = |sub: &str, email: &str| {
            inspector
                .sign_in_preview(Profile::Tribe, &identity(sub, email, "X"))
                .unwrap()
        };
        assert!(
            matches!(preview("1", "ada@example.com"), SignInPreview::Existing(m) if m.id == ada.id)
        );
        assert!(
            matches!(preview("9", "ADA@example.com"), SignInPreview::Existing(m) if m.id == ada.id)
        );
        assert!(matches!(
            preview("9", "new@example.com"),
            SignInPreview::New
        ));
        assert!(matches!(
            preview("1", "bob@example.com"),
            SignInPreview::EmailTaken { member, .. } if member.id == ada.id
        ));
        directory
            .set_status(&ada.id, Status::Deactivated, None, 150)
            .await
            .unwrap();
        assert!(matches!(
            preview("1", "ada@example.com"),
            SignInPreview::Deactivated(_)
        ));
        // A replay as the writer sees it: the inspector's answer was the writer's.
        let replay = directory
            .sign_in(
                Profile::Tribe,
                identity("1", "ada@example.com", "Ada"),
                used,
                None,
                200,
            )
            .await;
        assert!(matches!(replay, Err(DirectoryError::Replayed)));
        drop(inspector);
        drop(directory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[tokio::test]
    async fn tribe_finds_by_sub_then_email_and_updates() {
        let path = temp_db("tribe");
        let directory = Directory::open_sqlite(&path).unwrap();
        let first = directory
            .sign_in(
                Profile::Tribe,
                identity("1", "Ada@Example.com", "Ada"),
                fresh(),
                None,
                100,
            )
            .await
            .unwrap();
        assert!(first.created);
        let again = directory
            .sign_in(
                Profile::Tribe,
                identity("1", "ada@new.example", "Ada L."),
                fresh(),
                None,
                200,
            )
            .await
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.member.id, first.member.id);
        assert_eq!(again.member.email, "ada@new.example");
        assert_eq!(again.member.name, "Ada L.");
        // Found by email (any case) when the sub is new: the sub is linked.
        let linked = directory
            .sign_in(
                Profile::Tribe,
                identity("99", "ADA@new.example", "Ada"),
                fresh(),
                None,
                300,
            )
            .await
            .unwrap();
        assert_eq!(linked.member.id, first.member.id);
        assert_eq!(linked.member.sub, "99");
        // An email another member holds cannot be taken over.
        directory
            .sign_in(
                Profile::Tribe,
                identity("2", "bob@example.com", "Bob"),
                fresh(),
                None,
                300,
            )
            .await
            .unwrap();
        let clash = directory
            .sign_in(
                Profile::Tribe,
                identity("2", "ada@new.example", "Bob"),
                fresh(),
                None,
                400,
            )
            .await;
        assert!(matches!(clash, Err(DirectoryError::EmailTaken)));
        assert_eq!(directory.member_count().await.unwrap(), 2);
        let stored = directory.member(&first.member.id).await.unwrap().unwrap();
        assert_eq!(stored.login_count, 3);
        drop(directory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[tokio::test]
    async fn meltingspot_never_updates_and_a_new_email_is_a_new_member() {
        let path = temp_db("ms");
        let directory = Directory::open_sqlite(&path).unwrap();
        let mut zoe = identity("u1", "zoe@example.fr", "Zoë Z");
        zoe.first_name = Some("Zoë".into());
        let first = directory
            .sign_in(Profile::MeltingSpot, zoe.clone(), fresh(), None, 100)
            .await
            .unwrap();
        let mut renamed = zoe.clone();
        renamed.name = "Other Name".into();
        let again = directory
            .sign_in(Profile::MeltingSpot, renamed, fresh(), None, 200)
            .await
            .unwrap();
        assert_eq!(again.member.id, first.member.id);
        assert_eq!(
            again.member.name, "Zoë Z",
            "meltingspot logins do not update the profile"
        );
        let mut moved = zoe;
        moved.email = "zoe@elsewhere.fr".into();
        let new = directory
            .sign_in(Profile::MeltingSpot, moved, fresh(), None, 300)
            .await
            .unwrap();
        assert!(new.created);
        assert_ne!(new.member.id, first.member.id);
        drop(directory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[tokio::test]
    async fn concurrent_first_logins_make_one_member_and_tokens_are_once() {
        let path = temp_db("race");
        let directory = Directory::open_sqlite(&path).unwrap();
        let mut tasks = Vec::new();
        for i in 0..32 {
            let directory = directory.clone();
            tasks.push(tokio::spawn(async move {
                directory
                    .sign_in(
                        Profile::Tribe,
                        identity("same", "same@example.com", "Same"),
                        fresh(),
                        None,
                        100 + i,
                    )
                    .await
                    .unwrap()
                    .member
                    .id
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1);
        assert_eq!(directory.member_count().await.unwrap(), 1);
        let once = crate::directory::TokenUse {
            fingerprint: [7; 32],
            until: None,
        };
        let ada = || identity("t", "t@example.com", "T");
        assert!(
            directory
                .sign_in(Profile::Tribe, ada(), once, None, 1)
                .await
                .is_ok()
        );
        assert!(matches!(
            directory
                .sign_in(Profile::Tribe, ada(), once, None, 2)
                .await,
            Err(DirectoryError::Replayed)
        ));
        drop(directory);
        // Reopened: the data and the used token are still there.
        let directory = Directory::open_sqlite(&path).unwrap();
        assert_eq!(directory.member_count().await.unwrap(), 2);
        assert!(matches!(
            directory
                .sign_in(Profile::Tribe, ada(), once, None, 3)
                .await,
            Err(DirectoryError::Replayed)
        ));
        // A token remembered until t=10 may be used again after that (it would fail its exp check anyway).
        let expiring = crate::directory::TokenUse {
            fingerprint: [8; 32],
            until: Some(10),
        };
        assert!(
            directory
                .sign_in(Profile::Tribe, ada(), expiring, None, 5)
                .await
                .is_ok()
        );
        assert!(matches!(
            directory
                .sign_in(Profile::Tribe, ada(), expiring, None, 9)
                .await,
            Err(DirectoryError::Replayed)
        ));
        directory.sweep(11);
        assert!(
            directory
                .sign_in(Profile::Tribe, ada(), expiring, None, 11)
                .await
                .is_ok()
        );
        drop(directory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
