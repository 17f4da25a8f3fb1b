//! Authentication and authorisation of every call, in one tower layer in
//! front of all services: it sees the RPC path, so the permission table in
//! `domain::auth` decides. The caller's `Principal` rides along in the
//! request extensions for handlers that record who acted.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use futures_util::future::Either;
use tonic::Status;
use tower::{Layer, Service};

use crate::domain::{
    Error,
    auth::{Principal, Principals, Requirement, Subject, requirement},
};

/// Who may call what.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// No tokens file: every caller is the anonymous admin (loopback only,
    /// or by explicit --allow-unauthenticated).
    Open,
    Tokens {
        path: PathBuf,
        principals: RwLock<Arc<Principals>>,
    },
}

impl Authenticator {
    /// Everyone may call everything.
    pub fn open() -> Self {
        Self { mode: Mode::Open }
    }

    /// Principals from a tokens file; a broken file is an error.
    pub fn from_file(path: PathBuf) -> Result<Self, String> {
        let principals = Principals::load(&path)?;
        Ok(Self {
            mode: Mode::Tokens {
                path,
                principals: RwLock::new(Arc::new(principals)),
            },
        })
    }

    /// Whether tokens are required.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// Re-reads the tokens file. On error the previous principals stay.
    pub fn reload(&self) -> Result<usize, String> {
        let Mode::Tokens { path, principals } = &self.mode else {
            return Ok(0);
        };
        let fresh = Principals::load(path)?;
        let count = fresh.len();
        // A poisoned lock only means a reader panicked; the data is whole.
        *principals.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(count)
    }

    /// The caller for an RPC path, its headers and (under mTLS) its client
    /// certificate's subject, or the error to send. A bearer token, when
    /// sent, decides; otherwise the certificate subject may.
    pub fn authorize(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        client_subject: impl FnOnce() -> Option<Subject>,
    ) -> Result<Option<Principal>, Error> {
        let Requirement::Needs(permissions) = requirement(path) else {
            return Ok(None);
        };
        let Mode::Tokens { principals, .. } = &self.mode else {
            return Ok(Some(Principal::anonymous()));
        };
        let principals = principals.read().unwrap_or_else(|p| p.into_inner()).clone();
        let principal = match headers.get(http::header::AUTHORIZATION) {
            Some(header) => {
                let token = header
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .ok_or_else(|| Error::Unauthenticated("send `authorization: Bearer <token>`".into()))?;
                principals
                    .authenticate(token)
                    .ok_or_else(|| Error::Unauthenticated("unknown token".into()))?
            }
            None => match client_subject() {
                Some(subject) => principals.by_subject(&subject).ok_or_else(|| {
                    Error::Unauthenticated(format!(
                        "no principal for client certificate subject {subject:?}; send a bearer token or add \
                         client_cert_subject = \"{subject}\" to the tokens file",
                        subject = subject.to_string()
                    ))
                })?,
                None => return Err(Error::Unauthenticated("send `authorization: Bearer <token>`".into())),
            },
        };
        if let Some(missing) = permissions.iter().find(|p| !principal.allows(**p)) {
            return Err(Error::PermissionDenied {
                principal: principal.name.clone(),
                permission: missing.as_str(),
            });
        }
        Ok(Some(principal.clone()))
    }
}

/// The layer that puts [`Authenticator`] in front of a service.
#[derive(Clone, Debug)]
pub struct AuthLayer(Arc<Authenticator>);

impl AuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self(auth)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let subject = || super::peer::client_subject(extensions);
        match self.auth.authorize(request.uri().path(), request.headers(), subject) {
            Ok(principal) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                Either::Left(self.inner.call(request))
            }
            Err(err) => Either::Right(std::future::ready(Ok(Status::from(err).into_http()))),
        }
    }
}
