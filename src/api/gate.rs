//! What every customers.v1 call passes before its handler: the service must
//! be ready (database reachable and migrated).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tonic::{Request, Status};

/// Shared readiness flag, flipped by the server as the database comes and goes.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The interceptor in front of every customers.v1 service.
#[derive(Clone, Debug)]
pub struct Gate {
    readiness: Readiness,
}

impl Gate {
    /// A gate that lets calls through while `readiness` is set.
    pub fn new(readiness: Readiness) -> Self {
        Self { readiness }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.readiness.is_ready() {
            return Err(Status::unavailable(
                "the service is starting or its database is unreachable; retry",
            ));
        }
        Ok(request)
    }
}
