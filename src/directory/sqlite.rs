//! The embedded SQLite directory: one writer thread that commits in batches, WAL mode.
//!
//! SQLite allows one writer at a time, so every change goes through one thread that owns the connection. The thread
//! takes whatever jobs have queued up and runs them in one transaction (each in its own savepoint, so one failure
//! does not undo the others): under load a single commit carries many logins. A caller hears back only after the
//! commit, so an answered login is on disk, and WAL with `synchronous=NORMAL` keeps committed data through a crash
//! of the process (`kill -9`); only a power cut can lose the last few commits.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{DirectoryError, Member, SignIn, Status, TokenUse, email_key, new_member_id};
use crate::config::auth::Profile;
use crate::sso::claims::Identity;

/// Jobs taken into one transaction at most.
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
];

const MEMBER_COLUMNS: &str = "id, sub, email, name, first_name, last_name, tagline, title, picture, lang, timezone, \
custom, status, profile, created_at, updated_at, last_login_at, login_count";

enum Job {
    SignIn {
        profile: Profile,
        identity: Box<Identity>,
        token: TokenUse,
        now: i64,
        reply: oneshot::Sender<Result<SignIn, DirectoryError>>,
    },
    SweepTokens {
        now: i64,
    },
    Revoke {
        session_id: String,
        member_id: String,
        until: i64,
        reply: oneshot::Sender<Result<(), DirectoryError>>,
    },
    Revoked {
        now: i64,
        reply: oneshot::Sender<Result<Vec<(String, i64)>, DirectoryError>>,
    },
    Member {
        id: String,
        reply: oneshot::Sender<Result<Option<Member>, DirectoryError>>,
    },
    Count {
        reply: oneshot::Sender<Result<i64, DirectoryError>>,
    },
}

/// Handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SqliteDirectory {
    jobs: mpsc::Sender<Job>,
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
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        migrate(&mut conn).map_err(open_error)?;

        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("ssogate-directory".into())
            .spawn(move || writer(conn, &queue))
            .map_err(|source| DirectoryError::Folder {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self { jobs })
    }

    pub async fn sign_in(
        &self,
        profile: Profile,
        identity: Identity,
        token: TokenUse,
        now: i64,
    ) -> Result<SignIn, DirectoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::SignIn {
            profile,
            identity: Box::new(identity),
            token,
            now,
            reply,
        })?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    pub async fn revoke(
        &self,
        session_id: String,
        member_id: String,
        until: i64,
    ) -> Result<(), DirectoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Revoke {
            session_id,
            member_id,
            until,
            reply,
        })?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    pub async fn revoked(&self, now: i64) -> Result<Vec<(String, i64)>, DirectoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Revoked { now, reply })?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    /// Forgets used tokens that have expired (fire and forget: the writer runs it with the next batch).
    pub fn sweep_tokens(&self, now: i64) {
        let _ = self.send(Job::SweepTokens { now });
    }

    pub async fn member(&self, id: String) -> Result<Option<Member>, DirectoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Member { id, reply })?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    pub async fn member_count(&self) -> Result<i64, DirectoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Count { reply })?;
        answer.await.map_err(|_| DirectoryError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), DirectoryError> {
        self.jobs.send(job).map_err(|_| DirectoryError::Stopped)
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
fn writer(mut conn: Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

/// A job's answer, held until the batch commits.
enum Done {
    Revoke(
        oneshot::Sender<Result<(), DirectoryError>>,
        Result<(), DirectoryError>,
    ),
    Revoked(
        oneshot::Sender<Result<Vec<(String, i64)>, DirectoryError>>,
        Result<Vec<(String, i64)>, DirectoryError>,
    ),
    SignIn(
        oneshot::Sender<Result<SignIn, DirectoryError>>,
        Result<SignIn, DirectoryError>,
    ),
    Member(
        oneshot::Sender<Result<Option<Member>, DirectoryError>>,
        Result<Option<Member>, DirectoryError>,
    ),
    Count(
        oneshot::Sender<Result<i64, DirectoryError>>,
        Result<i64, DirectoryError>,
    ),
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            tracing::error!(error = %error, "directory: cannot begin a transaction");
            return fail_all(batch, &error);
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    for job in batch {
        done.push(match job {
            Job::SignIn {
                profile,
                identity,
                token,
                now,
                reply,
            } => Done::SignIn(
                reply,
                in_savepoint(&mut tx, |tx| {
                    use_token(tx, &token, now)?;
                    sign_in(tx, profile, &identity, now)
                }),
            ),
            Job::Revoke {
                session_id,
                member_id,
                until,
                reply,
            } => Done::Revoke(
                reply,
                in_savepoint(&mut tx, |tx| {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO revoked_sessions (id, member_id, until) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![session_id, member_id, until])?;
                    Ok(())
                }),
            ),
            Job::Revoked { now, reply } => Done::Revoked(reply, revoked(&tx, now)),
            Job::SweepTokens { now } => {
                if let Err(error) = in_savepoint(&mut tx, |tx| sweep_tokens(tx, now)) {
                    tracing::warn!(error = %error, "directory: sweeping used tokens failed");
                }
                continue;
            }
            Job::Member { id, reply } => Done::Member(reply, find(&tx, "id = ?1", &id)),
            Job::Count { reply } => Done::Count(
                reply,
                tx.query_row("SELECT COUNT(*) FROM members", [], |row| row.get(0))
                    .map_err(DirectoryError::from),
            ),
        });
    }
    if let Err(error) = tx.commit() {
        tracing::error!(error = %error, "directory: commit failed; the batch's changes are lost and reported as errors");
        for item in done {
            let fail = || DirectoryError::Corrupt(format!("commit failed: {error}"));
            match item {
                Done::SignIn(reply, _) => drop(reply.send(Err(fail()))),
                Done::Member(reply, _) => drop(reply.send(Err(fail()))),
                Done::Revoke(reply, _) => drop(reply.send(Err(fail()))),
                Done::Revoked(reply, _) => drop(reply.send(Err(fail()))),
                Done::Count(reply, _) => drop(reply.send(Err(fail()))),
            }
        }
        return;
    }
    for item in done {
        // A caller that went away (client hung up) just does not hear the answer; the change stands.
        match item {
            Done::SignIn(reply, result) => drop(reply.send(result)),
            Done::Member(reply, result) => drop(reply.send(result)),
            Done::Revoke(reply, result) => drop(reply.send(result)),
            Done::Revoked(reply, result) => drop(reply.send(result)),
            Done::Count(reply, result) => drop(reply.send(result)),
        }
    }
}

fn fail_all(batch: Vec<Job>, error: &rusqlite::Error) {
    let fail = || DirectoryError::Corrupt(format!("cannot begin a transaction: {error}"));
    for job in batch {
        match job {
            Job::SignIn { reply, .. } => drop(reply.send(Err(fail()))),
            Job::SweepTokens { .. } => {}
            Job::Member { reply, .. } => drop(reply.send(Err(fail()))),
            Job::Revoke { reply, .. } => drop(reply.send(Err(fail()))),
            Job::Revoked { reply, .. } => drop(reply.send(Err(fail()))),
            Job::Count { reply } => drop(reply.send(Err(fail()))),
        }
    }
}

fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    work: impl FnOnce(&Connection) -> Result<T, DirectoryError>,
) -> Result<T, DirectoryError> {
    let savepoint = tx.savepoint()?;
    let result = work(&savepoint);
    if result.is_ok() {
        savepoint.commit()?;
    }
    // Dropped without commit, the savepoint rolls back just this job.
    result
}

fn sign_in(
    tx: &Connection,
    profile: Profile,
    identity: &Identity,
    now: i64,
) -> Result<SignIn, DirectoryError> {
    let key = email_key(&identity.email);
    let existing = match profile {
        Profile::Tribe => match find(
            tx,
            "sub = ?1 ORDER BY last_login_at DESC LIMIT 1",
            &identity.sub,
        )? {
            Some(member) => Some(member),
            None => find(tx, "email_key = ?1", &key)?,
        },
        Profile::MeltingSpot => find(tx, "email_key = ?1", &key)?,
    };
    let Some(mut member) = existing else {
        return create(tx, profile, identity, &key, now).map(|member| SignIn {
            member,
            created: true,
        });
    };

    if profile == Profile::Tribe {
        if email_key(&member.email) != key {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM members WHERE email_key = ?1",
                    [&key],
                    |row| row.get(0),
                )
                .optional()?;
            if taken.is_some_and(|other| other != member.id) {
                return Err(DirectoryError::EmailTaken);
            }
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
    Ok(SignIn {
        member,
        created: false,
    })
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

/// Records the token's use; `Replayed` when it was used before and is still remembered.
fn use_token(tx: &Connection, token: &TokenUse, now: i64) -> Result<(), DirectoryError> {
    let until: Option<Option<i64>> = tx
        .prepare_cached("SELECT until FROM used_tokens WHERE fingerprint = ?1")?
        .query_row([&token.fingerprint[..]], |row| row.get(0))
        .optional()?;
    if let Some(until) = until {
        if until.is_none_or(|until| until >= now) {
            return Err(DirectoryError::Replayed);
        }
    }
    tx.prepare_cached(
        "INSERT OR REPLACE INTO used_tokens (fingerprint, used_at, until) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![&token.fingerprint[..], now, token.until])?;
    Ok(())
}

fn revoked(tx: &Connection, now: i64) -> Result<Vec<(String, i64)>, DirectoryError> {
    let mut statement =
        tx.prepare_cached("SELECT id, until FROM revoked_sessions WHERE until >= ?1")?;
    let rows = statement.query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn sweep_tokens(tx: &Connection, now: i64) -> Result<(), DirectoryError> {
    tx.prepare_cached("DELETE FROM revoked_sessions WHERE until < ?1")?
        .execute([now])?;
    tx.prepare_cached("DELETE FROM used_tokens WHERE until IS NOT NULL AND until < ?1")?
        .execute([now])?;
    Ok(())
}

fn find(tx: &Connection, condition: &str, value: &str) -> Result<Option<Member>, DirectoryError> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE {condition}");
    let row = tx
        .prepare_cached(&sql)?
        .query_row([value], row_to_raw)
        .optional()?;
    row.map(RawMember::into_member).transpose()
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
    async fn tribe_finds_by_sub_then_email_and_updates() {
        let path = temp_db("tribe");
        let directory = Directory::open_sqlite(&path).unwrap();
        let first = directory
            .sign_in(
                Profile::Tribe,
                identity("1", "Ada@Example.com", "Ada"),
                fresh(),
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
                300,
            )
            .await
            .unwrap();
        let clash = directory
            .sign_in(
                Profile::Tribe,
                identity("2", "ada@new.example", "Bob"),
                fresh(),
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
            .sign_in(Profile::MeltingSpot, zoe.clone(), fresh(), 100)
            .await
            .unwrap();
        let mut renamed = zoe.clone();
        renamed.name = "Other Name".into();
        let again = directory
            .sign_in(Profile::MeltingSpot, renamed, fresh(), 200)
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
            .sign_in(Profile::MeltingSpot, moved, fresh(), 300)
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
                .sign_in(Profile::Tribe, ada(), once, 1)
                .await
                .is_ok()
        );
        assert!(matches!(
            directory.sign_in(Profile::Tribe, ada(), once, 2).await,
            Err(DirectoryError::Replayed)
        ));
        drop(directory);
        // Reopened: the data and the used token are still there.
        let directory = Directory::open_sqlite(&path).unwrap();
        assert_eq!(directory.member_count().await.unwrap(), 2);
        assert!(matches!(
            directory.sign_in(Profile::Tribe, ada(), once, 3).await,
            Err(DirectoryError::Replayed)
        ));
        // A token remembered until t=10 may be used again after that (it would fail its exp check anyway).
        let expiring = crate::directory::TokenUse {
            fingerprint: [8; 32],
            until: Some(10),
        };
        assert!(
            directory
                .sign_in(Profile::Tribe, ada(), expiring, 5)
                .await
                .is_ok()
        );
        assert!(matches!(
            directory.sign_in(Profile::Tribe, ada(), expiring, 9).await,
            Err(DirectoryError::Replayed)
        ));
        directory.sweep_tokens(11);
        assert!(
            directory
                .sign_in(Profile::Tribe, ada(), expiring, 11)
                .await
                .is_ok()
        );
        drop(directory);
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }
}
