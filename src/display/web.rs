//! The web alarm board: one embedded page (HTML, CSS, JavaScript; no build
//! step, no external resources), live board views over Server-Sent Events,
//! and the acknowledge command.
//!
//! # Routes
//!
//! | route          | what                                                   |
//! |----------------|--------------------------------------------------------|
//! | `GET /`        | the page                                               |
//! | `GET /events`  | SSE: a `view` event with the board as JSON on every change and every second |
//! | `GET /view`    | the board as JSON, once                                |
//! | `POST /ack`    | `{"bed": "site/bed", "alarm": "spo2.low", "by": "JD"}` -> `{"id": ...}` |
//! | `POST /ack-all` | `{"bed": "site/bed", "by": "JD"}`: one `acknowledge_all` command for every open alarm of the bed -> `{"id": ...}` |
//! | `POST /command` | `{"bed": "site/bed", "by": "JD", "command": "start_session", "session": "K-0142"}`, `dose` (`amount`, `unit`, `route`, `note`), `start_recovery`, `end_session`, `pause_audio` (`duration_s`), `resume_audio` -> `{"id": ...}` |
//! | `POST /remove` | `{"bed": "site/bed"}`: takes a cleanly stopped bed off the board |
//! | `GET/POST /login` | the token form (only when a token is configured)    |
//!
//! # Access
//!
//! On a loopback address no token is needed (unless one is given), and the
//! `Host` header must name the loopback (so that a web page elsewhere cannot
//! reach the board through DNS rebinding). On any other address a token is
//! required: checked on every request (SSE included) as `Authorization:
//! Bearer <token>` or through the session cookie that `/login` sets, in
//! constant time, and never logged. Every `POST` needs the header
//! `X-Vigil-Request: 1`, which a cross-site form cannot send. TLS (rustls,
//! ring) is used when a certificate and key are given; a non-loopback
//! address without TLS is refused unless `--insecure-listen` says the
//! network is trusted (the token would travel in clear).
//!
//! A token must carry at least [`MIN_TOKEN_BITS`] bits (estimated from its
//! length and the kinds of characters in it, see [`estimated_bits`]);
//! `vigil display --new-token FILE` writes a random 256-bit one.
//!
//! Wrong tokens (at `/login` or as `Authorization: Bearer`) are counted per
//! client address: after [`LOGIN_FAILURES`] within [`THROTTLE_WINDOW`] every
//! further attempt from that address is answered `429 Too Many Requests`
//! with `Retry-After` (not checked, and counted) until the oldest of them
//! is a window old. Behind a reverse proxy every client shares the proxy's
//! address. A logged-in browser (session cookie) is not affected.
//!
//! `/ack`, `/ack-all` and `/command` for a bed the board does not show are
//! `404 Not Found`.
//!
//! Depends on [`super::link`] and [`super::state`].

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::feed::BedKey;
use super::link::Shared;

const INDEX: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");
const LOGIN: &str = include_str!("assets/login.html");
const COOKIE: &str = "vigil_session";

/// Errors of the web board. Each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr} (--listen): {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// A non-loopback address without a token.
    #[error("--listen {0} is reachable from other machines: give --token-file (and --tls-cert/--tls-key), or listen on 127.0.0.1")]
    NeedsToken(SocketAddr),
    /// A non-loopback address without TLS.
    #[error("--listen {0} is reachable from other machines and the access token would travel in clear: give --tls-cert and --tls-key, or --insecure-listen if the network is trusted (e.g. a TLS proxy in front)")]
    NeedsTls(SocketAddr),
    /// A new token cannot be written.
    #[error("cannot write a new access token to {path} (--new-token): {cause}")]
    NewToken {
        /// The file.
        path: PathBuf,
        /// Why (an existing file is never overwritten).
        cause: std::io::Error,
    },
    /// The operating system's random generator failed.
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
    /// The token file cannot be read.
    #[error("cannot read the access token from {path} (--token-file): {cause}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The token is too short or too regular.
    #[error("the token in {path} (--token-file) carries about {bits} bits; at least {MIN_TOKEN_BITS} are needed: write a random one with `vigil display --new-token FILE`")]
    WeakToken {
        /// The file.
        path: PathBuf,
        /// The estimate.
        bits: u32,
    },
    /// TLS files are unusable.
    #[error("{what} {path}: {problem}")]
    Tls {
        /// `--tls-cert` or `--tls-key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Serving failed.
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The access token, if any (never logged: not in `Debug` output).
    pub token: Option<Token>,
    /// Certificate chain and private key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve a non-loopback address without TLS (`--insecure-listen`).
    pub insecure_listen: bool,
}

/// The least a token must carry, in bits.
pub const MIN_TOKEN_BITS: u32 = 128;
/// Wrong tokens from one client address allowed within [`THROTTLE_WINDOW`].
pub const LOGIN_FAILURES: usize = 5;
/// The window in which [`LOGIN_FAILURES`] wrong tokens throttle a client.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses tracked at most (the stalest is forgotten first).
const THROTTLE_CLIENTS: usize = 4096;

/// An upper estimate of the bits in a token: its length times the bits of
/// the alphabet its characters come from (hex digits 4, decimal digits
/// 3.3, one case of letters 4.7, ...). A token of fewer than 8 distinct
/// characters (`aaaa...`, `abab...`) counts as none: it is not random.
pub fn estimated_bits(t: &str) -> u32 {
    let distinct: std::collections::HashSet<char> = t.chars().collect();
    if distinct.len() < 8 {
        return 0;
    }
    let hex = t.chars().all(|c| c.is_ascii_hexdigit())
        && !(t.chars().any(|c| c.is_ascii_lowercase())
            && t.chars().any(|c| c.is_ascii_uppercase()));
    let alphabet = if hex && !t.chars().all(|c| c.is_ascii_digit()) {
        16
    } else {
        let mut n = 0;
        if t.chars().any(|c| c.is_ascii_digit()) {
            n += 10;
        }
        if t.chars().any(|c| c.is_ascii_lowercase()) {
            n += 26;
        }
        if t.chars().any(|c| c.is_ascii_uppercase()) {
            n += 26;
        }
        if t.chars().any(|c| !c.is_ascii_alphanumeric()) {
            n += 32;
        }
        n
    };
    (t.chars().count() as f64 * f64::from(alphabet).log2()) as u32
}

/// Counts wrong tokens per client address (sans-IO: the time is passed
/// in). See the module docs for the numbers.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    refused: u64,
}

impl Throttle {
    /// `Err(retry_after)` while `client` has had [`LOGIN_FAILURES`] wrong
    /// tokens within [`THROTTLE_WINDOW`]; each refusal is counted.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(q) = self.failures.get_mut(&client) else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= THROTTLE_WINDOW)
        {
            q.pop_front();
        }
        match q.front() {
            None => {
                self.failures.remove(&client);
                Ok(())
            }
            Some(_) if q.len() < LOGIN_FAILURES => Ok(()),
            Some(oldest) => {
                self.refused += 1;
                Err(THROTTLE_WINDOW.saturating_sub(now.saturating_duration_since(*oldest)))
            }
        }
    }

    /// Records a wrong token from `client`; true when this one starts the
    /// throttling.
    pub fn failed(&mut self, client: IpAddr, now: Instant) -> bool {
        if self.failures.len() >= THROTTLE_CLIENTS && !self.failures.contains_key(&client) {
            let stalest = self
                .failures
                .iter()
                .min_by_key(|(_, q)| q.back().copied())
                .map(|(ip, _)| *ip);
            if let Some(ip) = stalest {
                self.failures.remove(&ip);
            }
        }
        let q = self.failures.entry(client).or_default();
        q.push_back(now);
        while q.len() > LOGIN_FAILURES {
            q.pop_front();
        }
        q.len() == LOGIN_FAILURES
    }

    /// A right token from `client` clears its count.
    pub fn succeeded(&mut self, client: IpAddr) {
        self.failures.remove(&client);
    }

    /// Attempts refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// An access token. Its `Debug` form hides it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// Reads the first line of `path`.
    pub fn read(path: &Path) -> Result<Token, WebError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebError::TokenFile {
            path: path.to_owned(),
            cause: source,
        })?;
        let t = text.lines().next().unwrap_or("").trim();
        let bits = estimated_bits(t);
        if bits < MIN_TOKEN_BITS {
            return Err(WebError::WeakToken {
                path: path.to_owned(),
                bits,
            });
        }
        Ok(Token(t.to_owned()))
    }

    /// Writes a random 256-bit token (64 hex digits and a newline) to a new
    /// file readable only by its owner (mode 0600); an existing file is
    /// never overwritten.
    pub fn write_new(path: &Path) -> Result<(), WebError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let token = crate::random::hex(32)?;
        let err = |source| WebError::NewToken {
            path: path.to_owned(),
            cause: source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(format!("{token}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(err)
    }

    /// A token from text (tests).
    pub fn new(t: &str) -> Token {
        Token(t.to_owned())
    }
}

/// Compares in time independent of where the first difference is (the
/// length is not secret: every generated token has 64 digits).
fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    views: watch::Receiver<Arc<str>>,
    token: Option<Arc<Token>>,
    /// The session cookie's value: random per start, so the token itself
    /// never sits in a browser's cookie store.
    session: Arc<str>,
    secure: bool,
    loopback_open: bool,
    port: u16,
    throttle: Arc<Mutex<Throttle>>,
}

impl App {
    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(429)` while `client` is throttled.
    #[allow(clippy::result_large_err)]
    fn check_throttle(&self, client: IpAddr) -> Result<(), Response> {
        self.throttle()
            .check(client, Instant::now())
            .map_err(|wait| {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    format!("too many wrong tokens from this address: try again in {secs} s"),
                )
                    .into_response()
            })
    }

    /// Counts a wrong token; logs when the client becomes throttled.
    fn wrong_token(&self, client: IpAddr) {
        let mut t = self.throttle();
        if t.failed(client, Instant::now()) {
            tracing::warn!(
                %client,
                refused = t.refused(),
                "board logins from {client} throttled: {LOGIN_FAILURES} wrong tokens within {} s; further attempts are answered 429",
                THROTTLE_WINDOW.as_secs()
            );
        }
    }
}

/// Serves the board until the process ends. `ready` is called with the
/// bound address once listening.
pub async fn serve(
    settings: WebSettings,
    shared: Arc<Shared>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), WebError> {
    let loopback = settings.listen.ip().is_loopback();
    if !loopback && settings.token.is_none() {
        return Err(WebError::NeedsToken(settings.listen));
    }
    if !loopback && settings.tls.is_none() && !settings.insecure_listen {
        return Err(WebError::NeedsTls(settings.listen));
    }
    let tls = match &settings.tls {
        Some((cert, key)) => Some(tls_config(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| WebError::Bind {
            addr: settings.listen,
            cause: source,
        })?;
    let local = listener.local_addr().map_err(WebError::Serve)?;

    let views = spawn_renderer(Arc::clone(&shared));
    let app = App {
        shared,
        views,
        token: settings.token.map(Arc::new),
        session: crate::random::hex(24)?.into(),
        secure: tls.is_some(),
        loopback_open: loopback,
        port: local.port(),
        throttle: Arc::default(),
    };
    let router = router(app).into_make_service_with_connect_info::<Client>();
    ready(local);
    match tls {
        None => axum::serve(listener, router).await.map_err(WebError::Serve),
        Some(cfg) => {
            let listener = TlsListener::start(listener, cfg, local);
            axum::serve(listener, router).await.map_err(WebError::Serve)
        }
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/events", get(events))
        .route("/view", get(view))
        .route("/ack", post(ack))
        .route("/ack-all", post(ack_all))
        .route("/command", post(command))
        .route("/remove", post(remove))
        .route("/login", get(|| async { Html(LOGIN) }).post(login))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Renders the board to JSON on every change (at most every
/// [`RENDER_GAP`]) and every second (so ages advance and the page can tell
/// the server is alive).
fn spawn_renderer(shared: Arc<Shared>) -> watch::Receiver<Arc<str>> {
    let render = |s: &Shared| -> Arc<str> {
        let view = s.board().view(SystemTime::now());
        serde_json::to_string(&view).unwrap_or_default().into()
    };
    let (tx, rx) = watch::channel(render(&shared));
    let mut changed = shared.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
            }
            tx.send_replace(render(&shared));
            // Coalesce: a station of 64 beds changes about 64 times a
            // second; rendering and sending each change would cost the
            // server and every page far more than a short wait. Changes
            // during the wait are rendered right after it.
            tokio::time::sleep(RENDER_GAP).await;
        }
    });
    rx
}

/// The shortest time between two renders of the board (the most a change
/// waits for its render).
pub const RENDER_GAP: Duration = Duration::from_millis(100);

async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if app.loopback_open && app.token.is_none() {
        // No token: only loopback clients that name the loopback host.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ok = [
            format!("127.0.0.1:{}", app.port),
            format!("localhost:{}", app.port),
            format!("[::1]:{}", app.port),
        ];
        if !ok.iter().any(|h| h == host) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "open this board as http://127.0.0.1:PORT/ or http://localhost:PORT/",
            )
                .into_response();
        }
        return next.run(req).await;
    }
    let Some(token) = &app.token else {
        return next.run(req).await;
    };
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let headers = req.headers();
    let cookie =
        cookie(headers, COOKIE).is_some_and(|c| same(c.as_bytes(), app.session.as_bytes()));
    if cookie {
        return next.run(req).await;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if let Some(given) = given {
        let client = client_ip(&req);
        if let Err(refused) = app.check_throttle(client) {
            return refused;
        }
        if same(given.trim().as_bytes(), token.0.as_bytes()) {
            app.throttle().succeeded(client);
            return next.run(req).await;
        }
        app.wrong_token(client);
    }
    if req.uri().path() == "/" {
        return Redirect::to("/login").into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "log in at /login with the display's access token",
    )
        .into_response()
}

/// The client's address, over plain TCP or TLS.
#[derive(Clone, Copy, Debug)]
struct Client(IpAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Client {
        Client(stream.remote_addr().ip())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Client {
        Client(stream.remote_addr().ip())
    }
}

/// The client's address (unspecified when the connection info is missing,
/// as in handler tests without a socket).
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<Client>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0 .0)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn login(
    State(app): State<App>,
    ConnectInfo(Client(client)): ConnectInfo<Client>,
    body: Bytes,
) -> Response {
    let Some(token) = &app.token else {
        return Redirect::to("/").into_response();
    };
    if let Err(refused) = app.check_throttle(client) {
        return refused;
    }
    let given = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| percent_decode(v))
        .unwrap_or_default();
    if !same(given.trim().as_bytes(), token.0.as_bytes()) {
        tracing::warn!(%client, "a login to the board failed (wrong token)");
        app.wrong_token(client);
        return (
            StatusCode::UNAUTHORIZED,
            Html(LOGIN.replace("<!--error-->", "<p class=error>Wrong token.</p>")),
        )
            .into_response();
    }
    app.throttle().succeeded(client);
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        app.session,
        if app.secure { "; Secure" } else { "" }
    );
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn view(State(app): State<App>) -> Response {
    let v = app.views.borrow().clone();
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn events(
    State(app): State<App>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut rx = app.views.clone();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let v = rx.borrow_and_update().clone();
        Some((Ok(Event::default().event("view").data(&*v)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(serde::Deserialize)]
struct AckRequest {
    bed: String,
    alarm: String,
    by: String,
}

/// A command from the page: checks the board's request header and parses
/// the JSON body. `refusal` says what the header is for; `shape` names the
/// expected fields.
#[allow(clippy::result_large_err)]
fn board_request<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    refusal: &str,
    shape: &str,
) -> Result<T, Response> {
    if headers.get("x-vigil-request").and_then(|v| v.to_str().ok()) != Some("1") {
        return Err((
            StatusCode::FORBIDDEN,
            format!("{refusal} (X-Vigil-Request header missing)"),
        )
            .into_response());
    }
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("expected {shape}: {e}")).into_response())
}

/// A bed named by the page.
#[allow(clippy::result_large_err)]
fn bed_key(bed: &str) -> Result<BedKey, Response> {
    BedKey::parse(bed).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

/// A bed named by the page that the board shows (`404` otherwise: a
/// command for a bed nobody here sees is never sent).
#[allow(clippy::result_large_err)]
fn shown_bed(app: &App, bed: &str) -> Result<BedKey, Response> {
    let key = bed_key(bed)?;
    if app.shared.board().beds().any(|b| *b == key) {
        Ok(key)
    } else {
        Err((
            StatusCode::NOT_FOUND,
            format!("bed {key} is not on this board"),
        )
            .into_response())
    }
}

async fn ack(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    ack_request(&app, &headers, &body).unwrap_or_else(|refused| refused)
}

#[allow(clippy::result_large_err)]
fn ack_request(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let req: AckRequest = board_request(
        headers,
        body,
        "send acknowledgements from the board",
        "{\"bed\", \"alarm\", \"by\"}",
    )?;
    let bed = shown_bed(app, &req.bed)?;
    Ok(match app.shared.acknowledge(&bed, &req.alarm, &req.by) {
        Ok(id) => json_response(serde_json::json!({ "id": id })),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    })
}

#[derive(serde::Deserialize)]
struct AckAllRequest {
    bed: String,
    by: String,
}

async fn ack_all(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    ack_all_request(&app, &headers, &body).unwrap_or_else(|refused| refused)
}

#[allow(clippy::result_large_err)]
fn ack_all_request(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let req: AckAllRequest = board_request(
        headers,
        body,
        "send acknowledgements from the board",
        "{\"bed\", \"by\"}",
    )?;
    let bed = shown_bed(app, &req.bed)?;
    Ok(match app.shared.acknowledge_all(&bed, &req.by) {
        Ok(id) => json_response(serde_json::json!({ "id": id })),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    })
}

#[derive(serde::Deserialize)]
struct CommandRequest {
    bed: String,
    by: String,
    #[serde(flatten)]
    command: super::feed::BedCommand,
}

async fn command(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    command_request(&app, &headers, &body).unwrap_or_else(|refused| refused)
}

#[allow(clippy::result_large_err)]
fn command_request(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let req: CommandRequest = board_request(
        headers,
        body,
        "send commands from the board",
        "{\"bed\", \"by\", \"command\", ...}",
    )?;
    let bed = shown_bed(app, &req.bed)?;
    Ok(match app.shared.command(&bed, req.command, &req.by) {
        Ok(id) => json_response(serde_json::json!({ "id": id })),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    })
}

fn json_response(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

#[derive(serde::Deserialize)]
struct RemoveRequest {
    bed: String,
}

async fn remove(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    remove_request(&app, &headers, &body).unwrap_or_else(|refused| refused)
}

#[allow(clippy::result_large_err)]
fn remove_request(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let req: RemoveRequest =
        board_request(headers, body, "remove beds from the board", "{\"bed\"}")?;
    let bed = bed_key(&req.bed)?;
    Ok(match app.shared.remove_bed(&bed) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::CONFLICT, e).into_response(),
    })
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| WebError::Tls {
            what: "--tls-cert",
            path: cert.to_owned(),
            problem: format!("{e}: give a PEM certificate chain"),
        })?;
    if certs.is_empty() {
        return Err(WebError::Tls {
            what: "--tls-cert",
            path: cert.to_owned(),
            problem: "holds no PEM certificate".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| WebError::Tls {
        what: "--tls-key",
        path: key.to_owned(),
        problem: format!("{e}: give a PEM private key (PKCS#8, PKCS#1 or SEC1)"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| WebError::Tls {
            what: "--tls-key",
            path: key.to_owned(),
            problem: format!("{e}: does the key belong to the certificate?"),
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A listener that hands axum finished TLS connections. Handshakes run in
/// tasks of their own (with a timeout), so a slow client never blocks others.
struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn start(tcp: TcpListener, cfg: Arc<rustls::ServerConfig>, local: SocketAddr) -> TlsListener {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match hs.await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The acceptor task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tokens_are_estimated_low_and_strong_ones_high() {
        assert_eq!(estimated_bits("aaaaaaaaaaaa"), 0);
        assert_eq!(estimated_bits(&"ab".repeat(40)), 0);
        assert!(estimated_bits("s3cret-token-1") < MIN_TOKEN_BITS);
        let hex128 = crate::random::hex(16).unwrap();
        assert_eq!(estimated_bits(&hex128), 128);
        assert_eq!(estimated_bits(&crate::random::hex(32).unwrap()), 256);
        assert!(estimated_bits(&hex128[..30]) < MIN_TOKEN_BITS);
    }

    #[test]
    fn new_tokens_are_strong_private_and_never_overwrite() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("vigil-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let _ = std::fs::remove_file(&path);
        Token::write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end().len(), 64);
        assert!(Token::read(&path).is_ok());
        assert!(matches!(
            Token::write_new(&path),
            Err(WebError::NewToken { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn wrong_tokens_throttle_one_client_for_a_window() {
        let mut t = Throttle::default();
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for i in 0..LOGIN_FAILURES as u64 {
            assert!(t.check(a, t0 + s(i)).is_ok());
            assert_eq!(t.failed(a, t0 + s(i)), i + 1 == LOGIN_FAILURES as u64);
        }
        // Throttled until the first failure is a window old.
        assert_eq!(t.check(a, t0 + s(10)), Err(s(50)));
        assert_eq!(t.check(a, t0 + s(59)), Err(s(1)));
        assert_eq!(t.refused(), 2);
        // Another address is not affected.
        assert!(t.check(b, t0 + s(10)).is_ok());
        // One more attempt once the oldest failure has left the window.
        assert!(t.check(a, t0 + s(60)).is_ok());
        assert!(t.failed(a, t0 + s(60)));
        assert_eq!(t.check(a, t0 + s(60)), Err(s(1)));
        // A right token clears the count.
        t.succeeded(a);
        assert!(t.check(a, t0 + s(60)).is_ok());
        // Old failures expire on their own.
        t.failed(b, t0);
        assert!(t.check(b, t0 + s(61)).is_ok());
        assert!(t.failures.is_empty());
    }

    #[test]
    fn helpers() {
        assert!(same(b"secret-token-1", b"secret-token-1"));
        assert!(!same(b"secret-token-1", b"secret-token-2"));
        assert!(!same(b"secret", b"secret-token"));
        assert!(!same(b"", b"x"));
        assert_eq!(percent_decode("a%2Fb+c%"), "a/b c%");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; vigil_session=xyz"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(
            format!("{:?}", Token::new("secret-token-1")),
            "Token(<hidden>)"
        );
    }
}
