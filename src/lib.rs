//! ssogate: a reverse-proxy authentication gateway that gives a legacy forum Tribe- and MeltingSpot-style JWT SSO.
//!
//! A request's path through the crate:
//!
//! - [`server`] accepts it (plain HTTP/1.1, or TLS with HTTP/2 or HTTP/1.1 by ALPN), HTTP/1 bytes passing through the
//!   [`framing`] guard, and hands it to the [`gateway`].
//! - [`gateway`] runs the phases in order: refuse what must never be forwarded, then the [`sso`] entry routes (token
//!   verification, [`limit`]s, replay guard, the member [`directory`], a new [`session`] cookie, a safe redirect),
//!   then `X-Forwarded-*` from [`forwarded`], then [`proxy`], which talks to the forum over the worker's [`pool`]
//!   in HTTP/1.1 of its own ([`h1`]).
//! - Any phase may stop with a [`reject::Rejection`]; `reject` is the one place those become HTTP responses.
//! - [`access_log`] writes the one line each request gets, with token parameters masked; [`metrics`] counts it; every
//!   line logged meanwhile carries the request's id from [`context`].
//!
//! [`config`] turns the YAML file into typed values once, at start, and [`reload`] again on SIGHUP; [`tls`] loads
//! certificates (and makes development ones); [`logging`] sets up `tracing`; [`admin`] serves the admin listener
//! ([`health`], metrics, the member API). [`demo`] runs the gateway with a built-in forum and token-minting site for
//! a first try; [`token_check`] explains a token's fate without using it.

pub mod access_log;
pub mod admin;
pub mod assertion;
pub mod body;
pub mod canonical;
pub mod cli_members;
pub mod config;
pub mod context;
pub mod demo;
pub mod directory;
pub mod forwarded;
pub mod framing;
pub mod gateway;
pub mod h1;
pub mod health;
pub mod identity;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod reject;
pub mod reload;
pub mod routes;
pub mod server;
pub mod session;
pub mod sso;
pub mod tls;
pub mod token_check;

pub use config::Config;
pub use server::{Running, start};
