//! The first-token and inter-token-stall deadlines of a stream. What counts as content is
//! decided by the stream pipeline (`stream::is_content`); this clock is told when some arrived.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Which content deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    FirstToken,
    Stall,
}

pub struct ContentClock {
    /// When the first content token is due (absolute); `None`: no first-token deadline.
    first_token: Option<Instant>,
    /// Longest gap between content tokens; `None`: no stall deadline.
    stall: Option<Duration>,
    seen: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl ContentClock {
    pub fn new(first_token: Option<Instant>, stall: Option<Duration>) -> Option<Self> {
        (first_token.is_some() || stall.is_some()).then_some(Self {
            first_token,
            stall,
            seen: false,
            sleep: None,
        })
    }

    pub fn has_stall(&self) -> bool {
        self.stall.is_some()
    }

    /// Content arrived: the first-token question is settled and the stall deadline moves.
    pub fn on_content(&mut self) {
        self.seen = true;
        if let Some(stall) = self.stall {
            let due = Instant::now() + stall;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(due),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(due))),
            }
        } else {
            self.sleep = None;
        }
    }

    /// Whether a deadline has passed; registers the task's waker for the next one otherwise.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        if self.sleep.is_none() {
            let due = if self.seen {
                return None; // content seen and no stall deadline
            } else {
                match (self.first_token, self.stall) {
                    (Some(at), _) => at,
                    // No first-token deadline: the stall clock starts with the first content.
                    (None, _) => return None,
                }
            };
            self.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
        }
        let sleep = self.sleep.as_mut()?;
        if sleep.as_mut().poll(cx).is_ready() {
            self.sleep = None;
            Some(if self.seen {
                Expired::Stall
            } else {
                Expired::FirstToken
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_then_stall() {
        let mut c = ContentClock::new(
            Some(Instant::now() + Duration::from_millis(100)),
            Some(Duration::from_millis(50)),
        )
        .unwrap();
        let mut cx = noop_cx();
        assert_eq!(c.poll_expired(&mut cx), None);
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(c.poll_expired(&mut cx), None);
        c.on_content();
        tokio::time::advance(Duration::from_millis(45)).await;
        assert_eq!(c.poll_expired(&mut cx), None);
        c.on_content();
        tokio::time::advance(Duration::from_millis(45)).await;
        assert_eq!(c.poll_expired(&mut cx), None);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(c.poll_expired(&mut cx), Some(Expired::Stall));
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_fires_without_content() {
        let mut c =
            ContentClock::new(Some(Instant::now() + Duration::from_millis(100)), None).unwrap();
        let mut cx = noop_cx();
        assert_eq!(c.poll_expired(&mut cx), None);
        tokio::time::advance(Duration::from_millis(101)).await;
        assert_eq!(c.poll_expired(&mut cx), Some(Expired::FirstToken));
        assert!(ContentClock::new(None, None).is_none());
    }
}
