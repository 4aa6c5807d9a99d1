<?php
/**
 * Sign-in links for a forum behind ssogate, minted with firebase/php-jwt the way MeltingSpot's JWT SSO doc does it
 * (`JWT::encode($userData, $privateKey, 'HS256')`).
 *
 *     composer install
 *     export SSOGATE_SSO_SECRET=...        # the secret in the gateway's sso.keys (never hard-code it)
 *     php mint.php --gateway https://forum.example.com --sub 42 --email ada@example.com \
 *         --first-name Ada --last-name Lovelace [--return /spaces] [more claims: --help]
 *
 * Prints one line per route, each a URL that signs the member in once, within 60 s:
 *
 *     tribe: https://forum.example.com/api/auth/sso?jwt=...&redirect_uri=%2Fspaces
 *     meltingspot: https://forum.example.com/sso/jwt?ms_token=...&referrerUrl=%2Fspaces
 *
 * Your app would use one of the two; require this file and call ssogate_sign_in_urls() from your own code.
 * Exit status: 0, or 2 when an argument or the secret is unusable (nothing is printed on stdout then).
 */

declare(strict_types=1);

if (!is_file(__DIR__ . '/vendor/autoload.php')) {
    fwrite(STDERR, "mint.php: run `composer install` in " . __DIR__ . " first (it installs firebase/php-jwt)\n");
    exit(2);
}
require_once __DIR__ . '/vendor/autoload.php';

use Firebase\JWT\JWT;

// Both docs: "highly recommended to set it to 60 seconds from now".
const SSOGATE_LIFETIME_SECONDS = 60;
// MeltingSpot's limit for sub, firstName, lastName and email; ssogate applies it to Tribe's sub, name, email too.
const SSOGATE_MAX_CHARS = 255;
// ssogate refuses HS256 secrets shorter than this.
const SSOGATE_MIN_SECRET_BYTES = 32;
const SSOGATE_MELTINGSPOT_LANGS = ['en', 'fr', 'de'];

final class SsogateUsageError extends InvalidArgumentException
{
}

/** Characters, not bytes (without needing the mbstring extension). */
function ssogate_chars(string $text): int
{
    return (int) preg_match_all('/./su', $text);
}

function ssogate_required(?string $value, string $label): string
{
    $value = trim((string) $value);
    if ($value === '') {
        throw new SsogateUsageError("$label is required");
    }
    if (ssogate_chars($value) > SSOGATE_MAX_CHARS) {
        throw new SsogateUsageError("$label is longer than " . SSOGATE_MAX_CHARS . ' characters');
    }
    return $value;
}

function ssogate_check_member(array $member): array
{
    $email = ssogate_required($member['email'] ?? null, '--email');
    if (!preg_match('/^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$/u', $email)) {
        throw new SsogateUsageError("--email \"$email\" is not an email address");
    }
    if (!empty($member['picture']) && !preg_match('#^https?://\S+$#', $member['picture'])) {
        throw new SsogateUsageError('--picture must be a full http:// or https:// URL');
    }
    if (!empty($member['lang']) && !in_array($member['lang'], SSOGATE_MELTINGSPOT_LANGS, true)) {
        throw new SsogateUsageError('--lang must be one of ' . implode(', ', SSOGATE_MELTINGSPOT_LANGS));
    }
    $first = ssogate_required($member['firstName'] ?? null, '--first-name');
    $last = ssogate_required($member['lastName'] ?? null, '--last-name');
    $name = !empty($member['name']) ? $member['name'] : "$first $last";
    return array_merge($member, [
        'sub' => ssogate_required($member['sub'] ?? null, '--sub'),
        'email' => $email,
        'firstName' => $first,
        'lastName' => $last,
        'name' => ssogate_required($name, '--name'),
    ]);
}

/** One leading /, not // or /\, printable ASCII without spaces: anything else the gateway replaces with /. */
function ssogate_check_return_path(string $path): string
{
    if (!preg_match('#^/(?![/\\\\])[\x21-\x7e]*$#', $path) || str_contains($path, '\\')) {
        throw new SsogateUsageError(
            "--return \"$path\" must be a path on the forum starting with one /, "
            . 'with no spaces or raw non-ASCII (percent-encode them)'
        );
    }
    return $path;
}

function ssogate_check_gateway(string $text): string
{
    $url = parse_url($text);
    $path = $url['path'] ?? '';
    if (
        $url === false || !in_array($url['scheme'] ?? '', ['http', 'https'], true) || empty($url['host'])
        || !in_array($path, ['', '/'], true) || isset($url['query']) || isset($url['fragment'])
        || isset($url['user']) || isset($url['pass'])
    ) {
        throw new SsogateUsageError("--gateway must be the forum's origin, e.g. https://forum.example.com");
    }
    $port = isset($url['port']) ? ':' . $url['port'] : '';
    return $url['scheme'] . '://' . $url['host'] . $port;
}

function ssogate_check_secret(?string $secret): string
{
    if ($secret === null || $secret === '') {
        throw new SsogateUsageError("set SSOGATE_SSO_SECRET to the secret of the gateway's sso.keys entry");
    }
    if (strlen($secret) < SSOGATE_MIN_SECRET_BYTES) {
        throw new SsogateUsageError('SSOGATE_SSO_SECRET must be at least ' . SSOGATE_MIN_SECRET_BYTES . ' bytes');
    }
    return $secret;
}

/** Issued now, valid 60 s, and a unique id so that the gateway can refuse a replay. */
function ssogate_lifetime(int $now): array
{
    return ['iat' => $now, 'exp' => $now + SSOGATE_LIFETIME_SECONDS, 'jti' => bin2hex(random_bytes(16))];
}

/** Tribe / Bettermode: sub, email, name required; tagline, picture, spaceIds optional. */
function ssogate_tribe_claims(array $member, int $now): array
{
    $claims = ['sub' => $member['sub'], 'email' => $member['email'], 'name' => $member['name']];
    if (!empty($member['tagline'])) {
        $claims['tagline'] = $member['tagline'];
    }
    if (!empty($member['picture'])) {
        $claims['picture'] = $member['picture'];
    }
    if (!empty($member['spaces'])) {
        $claims['spaceIds'] = array_values($member['spaces']);
    }
    return array_merge($claims, ssogate_lifetime($now));
}

/** MeltingSpot: sub, firstName, lastName, email required; title, avatarUrl, lang, timezone optional. */
function ssogate_meltingspot_claims(array $member, int $now): array
{
    $claims = [
        'sub' => $member['sub'],
        'firstName' => $member['firstName'],
        'lastName' => $member['lastName'],
        'email' => $member['email'],
    ];
    foreach (['title' => 'title', 'picture' => 'avatarUrl', 'lang' => 'lang', 'timezone' => 'timezone'] as $field => $claim) {
        if (!empty($member[$field])) {
            $claims[$claim] = $member[$field];
        }
    }
    return array_merge($claims, ssogate_lifetime($now));
}

/** The two sign-in URLs for $member, landing on $returnPath. Each token is single-use: mint one per sign-in. */
function ssogate_sign_in_urls(string $gateway, ?string $secret, array $member, string $returnPath = '/'): array
{
    $origin = ssogate_check_gateway($gateway);
    $key = ssogate_check_secret($secret);
    $member = ssogate_check_member($member);
    $back = rawurlencode(ssogate_check_return_path($returnPath));
    $now = time();
    $tribe = JWT::encode(ssogate_tribe_claims($member, $now), $key, 'HS256');
    $meltingspot = JWT::encode(ssogate_meltingspot_claims($member, $now), $key, 'HS256');
    return [
        'tribe' => "$origin/api/auth/sso?jwt=$tribe&redirect_uri=$back",
        'meltingspot' => "$origin/sso/jwt?ms_token=$meltingspot&referrerUrl=$back",
    ];
}

const SSOGATE_HELP = <<<'TEXT'
usage: SSOGATE_SSO_SECRET=... php mint.php --gateway URL --sub ID --email EMAIL
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

TEXT;

/** `--name value` or `--name=value`; unknown names are refused, so a typo is not silently ignored. */
function ssogate_parse_args(array $argv): array
{
    $known = [
        'gateway', 'sub', 'email', 'first-name', 'last-name', 'name', 'picture', 'tagline', 'title', 'lang',
        'timezone', 'space', 'return',
    ];
    $options = ['space' => []];
    for ($i = 1; $i < count($argv); $i++) {
        if ($argv[$i] === '--help') {
            return ['help' => true];
        }
        if (preg_match('/^--([a-z-]+)=(.*)$/s', $argv[$i], $match)) {
            [$name, $value] = [$match[1], $match[2]];
        } elseif (preg_match('/^--([a-z-]+)$/', $argv[$i], $match) && $i + 1 < count($argv)) {
            [$name, $value] = [$match[1], $argv[++$i]];
        } else {
            throw new SsogateUsageError("unexpected argument \"{$argv[$i]}\"");
        }
        if (!in_array($name, $known, true)) {
            throw new SsogateUsageError("unknown option --$name");
        }
        if ($name === 'space') {
            $options['space'][] = $value;
        } elseif (array_key_exists($name, $options)) {
            throw new SsogateUsageError("--$name is given more than once");
        } else {
            $options[$name] = $value;
        }
    }
    return $options;
}

function ssogate_main(array $argv): int
{
    try {
        $options = ssogate_parse_args($argv);
        if (isset($options['help'])) {
            fwrite(STDOUT, SSOGATE_HELP);
            return 0;
        }
        if (!isset($options['gateway'])) {
            throw new SsogateUsageError('--gateway is required');
        }
        $urls = ssogate_sign_in_urls(
            $options['gateway'],
            getenv('SSOGATE_SSO_SECRET') ?: null,
            [
                'sub' => $options['sub'] ?? null,
                'email' => $options['email'] ?? null,
                'firstName' => $options['first-name'] ?? null,
                'lastName' => $options['last-name'] ?? null,
                'name' => $options['name'] ?? null,
                'picture' => $options['picture'] ?? null,
                'tagline' => $options['tagline'] ?? null,
                'title' => $options['title'] ?? null,
                'lang' => $options['lang'] ?? null,
                'timezone' => $options['timezone'] ?? null,
                'spaces' => $options['space'],
            ],
            $options['return'] ?? '/'
        );
    } catch (SsogateUsageError $error) {
        fwrite(STDERR, 'mint.php: ' . $error->getMessage() . " (try --help)\n");
        return 2;
    }
    fwrite(STDOUT, "tribe: {$urls['tribe']}\nmeltingspot: {$urls['meltingspot']}\n");
    return 0;
}

if (PHP_SAPI === 'cli' && realpath($_SERVER['SCRIPT_FILENAME'] ?? '') === __FILE__) {
    exit(ssogate_main($argv));
}
