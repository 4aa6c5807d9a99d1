#!/usr/bin/env node
// Mint a JWT with node `jsonwebtoken`, the way Tribe's and MeltingSpot's docs do it:
//
//     jwt.sign(userData, privateKey, { algorithm: "HS256" })
//
// Same contract as mint.py. Input: one JSON object, from argv[2] or (when absent or "-") stdin:
//
//     {
//       "claims":    {"sub": 42, "email": "...", "name": "...", "iat": "now", "exp": "now+60"},
//       "secret":    "...",                    // HS256/384/512: the docs' shared "private key"
//       "private_key_pem": "-----BEGIN ...",   // RS*/PS*/ES*: instead of "secret"
//       "algorithm": "HS256",                  // default HS256, as in the docs
//       "headers":   {"kid": "next"}           // optional; kid goes through the `keyid` option
//     }
//
// A claim whose value is "now", "now+N" or "now-N" becomes Math.round(new Date().getTime() / 1000) (plus or minus
// N), computed once per token as in Tribe's sample. jsonwebtoken adds an iat of its own only when the payload has
// none (as for MeltingSpot's sample, which has neither iat nor exp).
// Prints the token and a newline. With --lines: one JSON object per stdin line, one token per output line.
//
// Exit status 2 on bad input, 1 when jsonwebtoken refuses to sign.
"use strict";

const fs = require("fs");
const jwt = require("jsonwebtoken");

const NOW = /^now(?:([+-])(\d+))?$/;

class InputError extends Error {}

function resolve(claims, now) {
  const out = {};
  for (const [name, value] of Object.entries(claims)) {
    const match = typeof value === "string" ? NOW.exec(value) : null;
    if (match) {
      const offset = Number(match[2] || 0);
      out[name] = match[1] === "-" ? now - offset : now + offset;
    } else {
      out[name] = value;
    }
  }
  return out;
}

function mint(spec) {
  if (spec === null || typeof spec !== "object" || typeof spec.claims !== "object" || spec.claims === null) {
    throw new InputError('expected a JSON object with a "claims" object');
  }
  const algorithm = spec.algorithm || "HS256";
  let privateKey;
  if ("private_key_pem" in spec) {
    privateKey = spec.private_key_pem;
  } else if ("secret" in spec) {
    privateKey = spec.secret;
  } else {
    throw new InputError('give "secret" (HS*) or "private_key_pem" (RS*/PS*/ES*)');
  }
  const options = { algorithm };
  const headers = Object.assign({}, spec.headers || {});
  if (headers.kid !== undefined) {
    options.keyid = headers.kid;
    delete headers.kid;
  }
  if (Object.keys(headers).length > 0) {
    options.header = headers;
  }
  const userData = resolve(spec.claims, Math.round(new Date().getTime() / 1000));
  return jwt.sign(userData, privateKey, options);
}

function run() {
  const args = process.argv.slice(2);
  if (args[0] === "--lines") {
    const lines = fs.readFileSync(0, "utf8").split("\n");
    const out = [];
    for (const line of lines) {
      if (line.trim()) {
        out.push(mint(JSON.parse(line)));
      }
    }
    process.stdout.write(out.map((t) => t + "\n").join(""));
    return;
  }
  const text = args.length > 0 && args[0] !== "-" ? args[0] : fs.readFileSync(0, "utf8");
  process.stdout.write(mint(JSON.parse(text)) + "\n");
}

try {
  run();
} catch (error) {
  if (error instanceof InputError || error instanceof SyntaxError) {
    process.stderr.write(`mint.js: ${error.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`mint.js: jsonwebtoken refused: ${error.message}\n`);
    process.exitCode = 1;
  }
}
