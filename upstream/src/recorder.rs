//! The last requests the API received, with their headers, so tests can check what a client
//! sent (for example: that a BFF never forwards the browser's cookies).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

const KEEP: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, with their values (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
pub struct Recorder {
    requests: Mutex<VecDeque<RecordedRequest>>,
}

impl Recorder {
    pub fn record(&self, request: RecordedRequest) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.len() == KEEP {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    pub fn list(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
