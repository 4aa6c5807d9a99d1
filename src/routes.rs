//! The forum's own login, sign-up, logout and account-settings routes, and protected paths.
//!
//! Tribe and MeltingSpot send a member who clicks "log in" on the community to the integrator's authorization URL;
//! the integrator signs them in and sends them back to the SSO entry route with a token. The gateway does the same
//! for the legacy forum: its login URLs redirect to `routes.authorization_url` with `redirectUrl` set to the
//! absolute entry URL carrying the page the member came from (MeltingSpot's flow). Logout ends the session on the
//! gateway (the old cookie stops working everywhere, even replayed) and then leaves for `routes.logout_url`. A
//! cross-site GET cannot log anyone out: it gets a page with a button that POSTs.

use http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, HeaderValue, LOCATION, ORIGIN, REFERER,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use url::Url;

use crate::body::Body;
use crate::canonical::has_prefix;
use crate::config::forum::RoutesConfig;
use crate::reject::html_page;
use crate::sso::return_path;

/// Query parameters forum login links use for "where to go afterwards".
const RETURN_PARAMS: [&str; 6] = [
    "next",
    "redirect",
    "redirect_to",
    "return_to",
    "returnTo",
    "referrerUrl",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Signup,
    Logout,
    AccountSettings,
}

#[derive(Debug)]
pub struct ForumRoutes {
    config: RoutesConfig,
    protect: Vec<String>,
    public_url: Url,
    /// The SSO entry `redirectUrl` points at, and its return-path parameter.
    entry_path: String,
    entry_return_param: String,
}

impl ForumRoutes {
    pub fn new(
        config: RoutesConfig,
        protect: Vec<String>,
        public_url: Url,
        entry_path: String,
        entry_return_param: String,
    ) -> Self {
        Self {
            config,
            protect,
            public_url,
            entry_path,
            entry_return_param,
        }
    }

    /// The route `path` (canonical) is, when the gateway answers it. Login and sign-up pass through to the forum
    /// when no integrator URL is configured for them.
    pub fn route(&self, path: &str) -> Option<Route> {
        let hit = |list: &[String]| list.iter().any(|p| p == path);
        if hit(&self.config.logout) {
            Some(Route::Logout)
        } else if hit(&self.config.login) && self.config.authorization_url.is_some() {
            Some(Route::Login)
        } else if hit(&self.config.signup) && self.config.signup_url.is_some() {
            Some(Route::Signup)
        } else if hit(&self.config.account_settings) && self.config.account_settings_url.is_some() {
            Some(Route::AccountSettings)
        } else {
            None
        }
    }

    pub fn is_protected(&self, path: &str) -> bool {
        self.protect.iter().any(|prefix| has_prefix(path, prefix))
    }

    /// Where to send a browser that must sign in to see `return_path`.
    pub fn sign_in_redirect(&self, return_path: &str) -> Response<Body> {
        match &self.config.authorization_url {
            Some(url) => redirect(
                StatusCode::FOUND,
                self.with_redirect_url(url, return_path).as_str(),
            ),
            None => {
                // No integrator URL: the forum's own login page, told where to come back to.
                let login = self.config.login.first().map_or("/", String::as_str);
                let mut target = Url::parse("http://gateway.invalid")
                    .ok()
                    .and_then(|base| base.join(login).ok());
                if let Some(target) = target.as_mut() {
                    target.query_pairs_mut().append_pair("next", return_path);
                }
                let location = target.map_or_else(
                    || "/".to_owned(),
                    |t| format!("{}?{}", t.path(), t.query().unwrap_or_default()),
                );
                redirect(StatusCode::FOUND, &location)
            }
        }
    }

    /// The integrator URL for a login or sign-up route, with `redirectUrl` pointing back at the entry route.
    pub fn integrator_redirect(
        &self,
        route: Route,
        request: &Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        let target = match route {
            Route::Login => self.config.authorization_url.as_ref(),
            Route::Signup => self.config.signup_url.as_ref(),
            Route::AccountSettings => {
                return match &self.config.account_settings_url {
                    Some(url) => redirect(StatusCode::FOUND, url.as_str()),
                    None => redirect(StatusCode::FOUND, "/"),
                };
            }
            Route::Logout => None,
        };
        let Some(target) = target else {
            return redirect(StatusCode::FOUND, "/");
        };
        let back = self.return_path_of(request);
        redirect(
            StatusCode::FOUND,
            self.with_redirect_url(target, &back).as_str(),
        )
    }

    /// `target?redirectUrl=<public_url><entry>?<return_param>=<return_path>`, keeping `target`'s own query.
    fn with_redirect_url(&self, target: &Url, return_path: &str) -> Url {
        let mut entry = self.public_url.clone();
        entry.set_path(&self.entry_path);
        entry
            .query_pairs_mut()
            .append_pair(&self.entry_return_param, return_path);
        let mut url = target.clone();
        url.query_pairs_mut()
            .append_pair("redirectUrl", entry.as_str());
        url
    }

    /// The page to come back to after a login started at `request`: a `next`-style parameter, else a same-origin
    /// `Referer`, else `/`. Anything unsafe becomes `/`.
    fn return_path_of(&self, request: &Request<hyper::body::Incoming>) -> String {
        if let Some(query) = request.uri().query() {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if RETURN_PARAMS.contains(&name.as_ref()) {
                    if let Ok(path) = return_path::check(&value) {
                        return path.to_owned();
                    }
                }
            }
        }
        let referer = request.headers().get(REFERER).and_then(|v| v.to_str().ok());
        if let Some(referer) = referer.and_then(|r| Url::parse(r).ok()) {
            if self.is_our_origin(&referer, request.headers()) {
                let path = match referer.query() {
                    Some(query) => format!("{}?{query}", referer.path()),
                    None => referer.path().to_owned(),
                };
                if let Ok(path) = return_path::check(&path) {
                    return path.to_owned();
                }
            }
        }
        "/".to_owned()
    }

    /// Whether a request comes from one of our own pages: `Some(true)` same-origin, `Some(false)` cross-site,
    /// `None` when the browser said nothing (old browsers, scripts).
    pub fn same_origin(&self, headers: &HeaderMap) -> Option<bool> {
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            return Some(matches!(site, "same-origin" | "none"));
        }
        for name in [ORIGIN, REFERER] {
            if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
                return Some(Url::parse(value).is_ok_and(|url| self.is_our_origin(&url, headers)));
            }
        }
        None
    }

    /// Same scheme, host and port as `public_url`, or the host the client addressed.
    fn is_our_origin(&self, url: &Url, headers: &HeaderMap) -> bool {
        if url.origin() == self.public_url.origin() {
            return true;
        }
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        let authority = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return false,
        };
        host.is_some_and(|host| host.eq_ignore_ascii_case(&authority))
    }

    /// Where logout leaves the member.
    pub fn after_logout(&self) -> String {
        self.config
            .logout_url
            .as_ref()
            .map_or_else(|| "/".to_owned(), Url::to_string)
    }
}

/// What the logout route should do with this request.
#[derive(Debug, PartialEq, Eq)]
pub enum LogoutDecision {
    LogOut,
    /// A cross-site (or unverifiable) GET: ask for confirmation instead.
    Confirm,
    Refuse,
    WrongMethod,
}

pub fn logout_decision(method: &Method, same_origin: Option<bool>) -> LogoutDecision {
    match (method, same_origin) {
        (&Method::POST, Some(false)) => LogoutDecision::Refuse,
        (&Method::POST, _) => LogoutDecision::LogOut,
        (&Method::GET | &Method::HEAD, Some(true)) => LogoutDecision::LogOut,
        (&Method::GET | &Method::HEAD, _) => LogoutDecision::Confirm,
        _ => LogoutDecision::WrongMethod,
    }
}

/// The page a cross-site GET to the logout route gets: nothing happens until the member presses the button.
pub fn confirm_logout_page(action: &str) -> Response<Body> {
    let form = format!(
        "Do you want to sign out of the forum?</p><form method=\"post\" action=\"{}\">\
<button type=\"submit\">Sign out</button></form><p>",
        action.replace('"', "%22")
    );
    let mut response = Response::new(Body::full(html_page(StatusCode::OK, "Sign out", &form)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An API or XHR caller (gets 401 rather than a login redirect).
pub fn is_api_request(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    xhr || (!accept.contains("text/html") && (accept.contains("json") || accept.contains("xml")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_needs_post_or_same_origin() {
        assert_eq!(logout_decision(&Method::POST, None), LogoutDecision::LogOut);
        assert_eq!(
            logout_decision(&Method::POST, Some(true)),
            LogoutDecision::LogOut
        );
        assert_eq!(
            logout_decision(&Method::POST, Some(false)),
            LogoutDecision::Refuse
        );
        assert_eq!(
            logout_decision(&Method::GET, Some(true)),
            LogoutDecision::LogOut
        );
        assert_eq!(
            logout_decision(&Method::GET, Some(false)),
            LogoutDecision::Confirm
        );
        assert_eq!(logout_decision(&Method::GET, None), LogoutDecision::Confirm);
        assert_eq!(
            logout_decision(&Method::DELETE, None),
            LogoutDecision::WrongMethod
        );
    }

    #[test]
    fn same_origin_signals() {
        let routes = ForumRoutes::new(
            RoutesConfig::default(),
            vec!["/private".into()],
            Url::parse("https://forum.example.com").unwrap(),
            "/sso/jwt".into(),
            "referrerUrl".into(),
        );
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert_eq!(
            routes.same_origin(&headers(&[("sec-fetch-site", "cross-site")])),
            Some(false)
        );
        assert_eq!(
            routes.same_origin(&headers(&[("sec-fetch-site", "same-origin")])),
            Some(true)
        );
        assert_eq!(
            routes.same_origin(&headers(&[("origin", "https://forum.example.com")])),
            Some(true)
        );
        assert_eq!(
            routes.same_origin(&headers(&[("origin", "https://evil.example")])),
            Some(false)
        );
        assert_eq!(
            routes.same_origin(&headers(&[("origin", "null")])),
            Some(false)
        );
        assert_eq!(
            routes.same_origin(&headers(&[
                ("referer", "http://127.0.0.1:8080/t/1"),
                ("host", "127.0.0.1:8080")
            ])),
            Some(true)
        );
        assert_eq!(routes.same_origin(&headers(&[])), None);
        assert!(routes.is_protected("/private/x"));
        assert!(!routes.is_protected("/privately"));
    }
}
