//! Simulated time: with `time_scale` 10, a 20 s call takes 2 s of wall time. The engine and the
//! simulated network sleep through this clock; durations reported to customers are simulated
//! seconds, timestamps are wall-clock.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    pub fn new(time_scale: f64) -> Clock {
        Clock { scale: if time_scale > 0.0 { time_scale } else { 1.0 } }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Wall time that `simulated` lasts.
    pub fn wall(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.scale)
    }

    /// Simulated time that `wall` lasted.
    pub fn simulated(&self, wall: Duration) -> Duration {
        wall.mul_f64(self.scale)
    }

    pub async fn sleep(&self, simulated: Duration) {
        tokio::time::sleep(self.wall(simulated)).await
    }

    pub fn deadline(&self, simulated: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.wall(simulated)
    }
}
