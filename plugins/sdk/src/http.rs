//! A blocking HTTP client over `wasi:http/outgoing-handler`, the only network access a plugin
//! has. The operator lets requests through only to the Provider's `allowedHosts`, refuses
//! private and link-local addresses unless listed, and adds the Provider's credentials for a
//! host itself; a refused request comes back as an [`Error::Permanent`] naming the host.
//! Hand-written because the crates that do this (`wstd`, `waki`) bring an async runtime or a
//! different wasi version for what is a few dozen lines of blocking calls.

use wasi::http::{
    outgoing_handler,
    types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme},
};
use wasi::io::streams::StreamError;

use crate::Error;

/// A response with its whole body read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error a provider usually wants for a failed response: 5xx and 429 are worth
    /// retrying, 404 is `not-found`, anything else is permanent.
    pub fn error_for_status(self) -> Result<Self, Error> {
        let message = || format!("HTTP {}: {}", self.status, self.text());
        match self.status {
            200..=299 => Ok(self),
            404 => Err(Error::NotFound(message())),
            429 | 500..=599 => Err(Error::Transient(message())),
            _ => Err(Error::Permanent(message())),
        }
    }
}

pub fn get(url: &str) -> Result<Response, Error> {
    request("GET", url, &[], None)
}

pub fn post_json(url: &str, json: &str) -> Result<Response, Error> {
    request("POST", url, &[("content-type", "application/json")], Some(json.as_bytes()))
}

pub fn delete(url: &str) -> Result<Response, Error> {
    request("DELETE", url, &[], None)
}

/// Sends one request and reads the whole response. Transport failures (connection refused,
/// timeouts, DNS) are transient; requests the operator refuses are permanent.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Response, Error> {
    let (scheme, authority, path) = split_url(url)?;
    let fields: Vec<(String, Vec<u8>)> =
        headers.iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())).collect();
    let fields = Fields::from_list(&fields).map_err(|e| Error::Permanent(format!("invalid header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    };
    let invalid = |what: &str| Error::Permanent(format!("invalid {what} in {url}"));
    request.set_method(&method).map_err(|()| invalid("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| invalid("host"))?;
    request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;

    let outgoing_body = request.body().map_err(|()| Error::Permanent("request body taken twice".into()))?;
    if let Some(body) = body {
        let stream = outgoing_body.write().map_err(|()| Error::Permanent("request body stream taken twice".into()))?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(url, e))?;
        }
    }
    let pending = outgoing_handler::handle(request, None).map_err(|e| transport_error(url, e))?;
    OutgoingBody::finish(outgoing_body, None).map_err(|e| transport_error(url, e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport_error(url, code)),
        Some(Err(())) | None => return Err(Error::Transient(format!("{url}: no response"))),
    };

    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response.consume().map_err(|()| Error::Transient(format!("{url}: response body unavailable")))?;
    let stream = incoming.stream().map_err(|()| Error::Transient(format!("{url}: response body unavailable")))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(stream_error(url, e)),
        }
    }
    drop(stream);
    Ok(Response { status, headers, body })
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str), Error> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| Error::Permanent(format!("{url} is not an absolute http(s) URL")))?;
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => {
            return Err(Error::Permanent(format!("{url}: unsupported scheme {other}")));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority, path))
}

/// The operator refuses a request with `HTTP-request-denied`; that will not change on retry.
fn transport_error(url: &str, code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => {
            Error::Permanent(format!("{url}: refused by the operator (host not in allowedHosts)"))
        }
        other => Error::Transient(format!("{url}: {other:?}")),
    }
}

fn stream_error(url: &str, error: StreamError) -> Error {
    match error {
        StreamError::LastOperationFailed(e) => Error::Transient(format!("{url}: {}", e.to_debug_string())),
        StreamError::Closed => Error::Transient(format!("{url}: stream closed")),
    }
}
