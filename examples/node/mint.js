#!/usr/bin/env node
// Sign-in links for a forum behind ssogate, minted with node `jsonwebtoken` the way Tribe's and MeltingSpot's
// JWT SSO docs do it (`jwt.sign(userData, privateKey, { algorithm: "HS256" })`).
//
//   export SSOGATE_SSO_SECRET=...        # the secret in the gateway's sso.keys (never hard-code it)
//   node mint.js --gateway https://forum.example.com --sub 42 --email ada@example.com \
//       --first-name Ada --last-name Lovelace [--return /spaces] [more claims: --help]
//
// Prints one line per route, each a URL that signs the member in once, within 60 s:
//
//   tribe: https://forum.example.com/api/auth/sso?jwt=...&redirect_uri=%2Fspaces
//   meltingspot: https://forum.example.com/sso/jwt?ms_token=...&referrerUrl=%2Fspaces
//
// Your app would use one of the two. The functions are exported for use from your own server code.
// Exit status: 0, or 2 when an argument or the secret is unusable (nothing is printed on stdout then).
"use strict";

const crypto = require("crypto");
const { parseArgs } = require("util");
const jwt = require("jsonwebtoken");

// Both docs: "highly recommended to set it to 60 seconds from now".
const LIFETIME_SECONDS = 60;
// MeltingSpot's limit for sub, firstName, lastName and email; ssogate applies it to Tribe's sub, name, email too.
const MAX_CHARS = 255;
// ssogate refuses HS256 secrets shorter than this.
const MIN_SECRET_BYTES = 32;
const MELTINGSPOT_LANGS = ["en", "fr", "de"];

class UsageError extends Error {}

function chars(text) {
  return [...text].length;
}

function required(member, field, label) {
  const value = (member[field] || "").trim();
  if (!value) {
    throw new UsageError(`${label} is required`);
  }
  if (chars(value) > MAX_CHARS) {
    throw new UsageError(`${label} is longer than ${MAX_CHARS} characters`);
  }
  return value;
}

function checkMember(member) {
  const email = required(member, "email", "--email");
  if (!/^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$/.test(email)) {
    throw new UsageError(`--email ${JSON.stringify(email)} is not an email address`);
  }
  if (member.picture && !/^https?:\/\/\S+$/.test(member.picture)) {
    throw new UsageError("--picture must be a full http:// or https:// URL");
  }
  if (member.lang && !MELTINGSPOT_LANGS.includes(member.lang)) {
    throw new UsageError(`--lang must be one of ${MELTINGSPOT_LANGS.join(", ")}`);
  }
  const firstName = required(member, "firstName", "--first-name");
  const lastName = required(member, "lastName", "--last-name");
  return {
    ...member,
    sub: required(member, "sub", "--sub"),
    email,
    firstName,
    lastName,
    name: required({ name: member.name || `${firstName} ${lastName}` }, "name", "--name"),
  };
}

// Only a root-relative path is followed by the gateway (anything else lands on /), so refuse the rest here.
function checkReturnPath(path) {
  if (!/^\/(?![/\\])[\x21-\x7e]*$/.test(path) || path.includes("\\")) {
    throw new UsageError(
      `--return ${JSON.stringify(path)} must be a path on the forum starting with one /, ` +
        "with no spaces or raw non-ASCII (percent-encode them)",
    );
  }
  return path;
}

function checkGateway(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--gateway ${JSON.stringify(text)} is not a URL`);
  }
  if (!["http:", "https:"].includes(url.protocol) || url.pathname !== "/" || url.search || url.hash) {
    throw new UsageError("--gateway must be the forum's origin, e.g. https://forum.example.com");
  }
  return url.origin;
}

function checkSecret(secret) {
  if (!secret) {
    throw new UsageError("set SSOGATE_SSO_SECRET to the secret of the gateway's sso.keys entry");
  }
  if (Buffer.byteLength(secret, "utf8") < MIN_SECRET_BYTES) {
    throw new UsageError(`SSOGATE_SSO_SECRET must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  return secret;
}

// Claims that every token gets: issued now, valid 60 s, and a unique id so that the gateway can refuse a replay.
function lifetime(now) {
  return { iat: now, exp: now + LIFETIME_SECONDS, jti: crypto.randomUUID() };
}

// Tribe / Bettermode: sub, email, name required; tagline, picture, spaceIds optional.
function tribeClaims(member, now) {
  const claims = { sub: member.sub, email: member.email, name: member.name };
  if (member.tagline) claims.tagline = member.tagline;
  if (member.picture) claims.picture = member.picture;
  if (member.spaces && member.spaces.length > 0) claims.spaceIds = member.spaces;
  return { ...claims, ...lifetime(now) };
}

// MeltingSpot: sub, firstName, lastName, email required; title, avatarUrl, lang, timezone optional.
function meltingSpotClaims(member, now) {
  const claims = {
    sub: member.sub,
    firstName: member.firstName,
    lastName: member.lastName,
    email: member.email,
  };
  if (member.title) claims.title = member.title;
  if (member.picture) claims.avatarUrl = member.picture;
  if (member.lang) claims.lang = member.lang;
  if (member.timezone) claims.timezone = member.timezone;
  return { ...claims, ...lifetime(now) };
}

function sign(claims, secret) {
  return jwt.sign(claims, secret, { algorithm: "HS256" });
}

// The two sign-in URLs for `member`, landing on `returnPath`. Each token is single-use: mint one per sign-in.
function signInUrls({ gateway, secret, member, returnPath = "/" }) {
  const origin = checkGateway(gateway);
  const key = checkSecret(secret);
  const checked = checkMember(member);
  const back = encodeURIComponent(checkReturnPath(returnPath));
  const now = Math.round(new Date().getTime() / 1000);
  return {
    tribe: `${origin}/api/auth/sso?jwt=${sign(tribeClaims(checked, now), key)}&redirect_uri=${back}`,
    meltingspot: `${origin}/sso/jwt?ms_token=${sign(meltingSpotClaims(checked, now), key)}&referrerUrl=${back}`,
  };
}

const HELP = `usage: SSOGATE_SSO_SECRET=... node mint.js --gateway URL --sub ID --email EMAIL
                 --first-name NAME --last-name NAME [options]

  --gateway URL       the forum's address through ssogate (https://forum.example.com)
  --sub ID            the member's id in your app (both routes)
  --email EMAIL       a verified email address (both routes)
  --first-name NAME   MeltingSpot firstName
  --last-name NAME    MeltingSpot lastName
  --name NAME         Tribe name (default: first and last name)
  --picture URL       Tribe picture / MeltingSpot avatarUrl (http or https)
  --tagline TEXT      Tribe tagline
  --title TEXT        MeltingSpot title
  --lang en|fr|de     MeltingSpot lang
  --timezone ZONE     MeltingSpot timezone (IANA, e.g. Europe/Paris)
  --space ID          Tribe spaceIds (repeatable)
  --return PATH       where the member lands on the forum (default /)
`;

function main() {
  const { values } = parseArgs({
    options: {
      gateway: { type: "string" },
      sub: { type: "string" },
      email: { type: "string" },
      "first-name": { type: "string" },
      "last-name": { type: "string" },
      name: { type: "string" },
      picture: { type: "string" },
      tagline: { type: "string" },
      title: { type: "string" },
      lang: { type: "string" },
      timezone: { type: "string" },
      space: { type: "string", multiple: true },
      return: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (!values.gateway) {
    throw new UsageError("--gateway is required");
  }
  const urls = signInUrls({
    gateway: values.gateway,
    secret: process.env.SSOGATE_SSO_SECRET,
    returnPath: values.return,
    member: {
      sub: values.sub,
      email: values.email,
      firstName: values["first-name"],
      lastName: values["last-name"],
      name: values.name,
      picture: values.picture,
      tagline: values.tagline,
      title: values.title,
      lang: values.lang,
      timezone: values.timezone,
      spaces: values.space,
    },
  });
  process.stdout.write(`tribe: ${urls.tribe}\nmeltingspot: ${urls.meltingspot}\n`);
}

module.exports = { signInUrls, tribeClaims, meltingSpotClaims, UsageError };

if (require.main === module) {
  try {
    main();
  } catch (error) {
    // parseArgs throws TypeErrors with a code for unknown or malformed options.
    if (error instanceof UsageError || (error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`mint.js: ${error.message} (try --help)\n`);
      process.exitCode = 2;
    } else {
      throw error;
    }
  }
}
