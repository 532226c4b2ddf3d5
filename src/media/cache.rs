//! Decoded audio kept in memory: synthesized speech by (engine, text, voice), streams by URL.
//!
//! Least recently used clips are dropped first once the clips' total size passes
//! `media.audio_cache_bytes`. Loading is single-flight: while a key is being synthesized or
//! fetched, every other request for it waits for that one load instead of starting its own
//! (a `talk` to 1,000 calls at once runs espeak-ng once). Failed loads are not kept: the next
//! request tries again. A load whose caller gives up (its future dropped) hands over to one of
//! the waiters.

use crate::media::clip::Clip;
use crate::media::tts::{TextToSpeech, TtsError, Voice};
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use tokio::sync::watch;

/// The key of a synthesized clip: the same text in another voice or engine is other audio.
pub fn tts_key(engine: &str, text: &str, voice: &Voice) -> String {
    format!("tts\u{0}{engine}\u{0}{}\u{0}{}\u{0}{text}", voice.language, voice.style)
}

/// The key of a stream's clip.
pub fn stream_key(url: &str) -> String {
    format!("stream\u{0}{url}")
}

pub struct AudioCache {
    max_bytes: usize,
    state: Mutex<State>,
}

/// What a waiter watches: None until the load ends.
type Outcome<E> = watch::Receiver<Option<Result<Clip, E>>>;

#[derive(Default)]
struct State {
    clips: HashMap<String, (Clip, u64)>,
    /// Last use → key, oldest first.
    by_use: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
    /// Loads under way: key → (load id, `Outcome<E>` of the loader's error type).
    loading: HashMap<String, (u64, Box<dyn Any + Send + Sync>)>,
    next_load: u64,
}

/// Memory a cached clip counts for.
fn cost(key: &str, clip: &Clip) -> usize {
    key.len() + clip.size_bytes()
}

impl State {
    fn touch(&mut self, key: &str) -> Option<Clip> {
        let (clip, used) = self.clips.get_mut(key)?;
        self.by_use.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.by_use.insert(self.clock, key.to_string());
        Some(clip.clone())
    }

    fn remove(&mut self, key: &str) {
        if let Some((clip, used)) = self.clips.remove(key) {
            self.by_use.remove(&used);
            self.bytes -= cost(key, &clip);
        }
    }

    fn insert(&mut self, max_bytes: usize, key: &str, clip: Clip) {
        self.remove(key);
        let size = cost(key, &clip);
        if size > max_bytes {
            return; // larger than the whole cache: played, never kept
        }
        while self.bytes + size > max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some((clip, _)) = self.clips.remove(&oldest) {
                self.bytes -= cost(&oldest, &clip);
            }
        }
        self.clock += 1;
        self.by_use.insert(self.clock, key.to_string());
        self.clips.insert(key.to_string(), (clip, self.clock));
        self.bytes += size;
    }
}

/// Ends a load: whether it finished or its future was dropped, its entry goes.
struct Loading<'a> {
    cache: &'a AudioCache,
    key: &'a str,
    id: u64,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if state.loading.get(self.key).is_some_and(|(id, _)| *id == self.id) {
            state.loading.remove(self.key);
        }
    }
}

enum Role<E> {
    Wait(Outcome<E>),
    Load(watch::Sender<Option<Result<Clip, E>>>, u64),
    /// The key is being loaded with another error type (never with the helpers' keys).
    Alone,
}

impl AudioCache {
    /// A cache holding at most `max_bytes` of clips (0: keep nothing, still single-flight).
    pub fn new(max_bytes: usize) -> AudioCache {
        AudioCache { max_bytes, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every await-free step; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The clip under `key`, if kept (and marks it used).
    pub fn get(&self, key: &str) -> Option<Clip> {
        self.lock().touch(key)
    }

    pub fn insert(&self, key: &str, clip: Clip) {
        self.lock().insert(self.max_bytes, key, clip)
    }

    /// Clips kept.
    pub fn len(&self) -> usize {
        self.lock().clips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory the kept clips count for (samples and keys).
    pub fn size_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The clip under `key`: kept, being loaded by another caller (waits for it), or loaded
    /// now by `load`. A load's error goes to everyone waiting for it and is not kept.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<Clip, E>
    where
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Clip, E>>,
    {
        loop {
            let role = {
                let mut state = self.lock();
                if let Some(clip) = state.touch(key) {
                    return Ok(clip);
                }
                match state.loading.get(key) {
                    Some((_, outcome)) => match outcome.downcast_ref::<Outcome<E>>() {
                        Some(outcome) => Role::Wait(outcome.clone()),
                        None => Role::Alone,
                    },
                    None => {
                        let (sender, receiver) = watch::channel(None);
                        state.next_load += 1;
                        let id = state.next_load;
                        state.loading.insert(key.to_string(), (id, Box::new(receiver)));
                        Role::Load(sender, id)
                    }
                }
            };
            match role {
                Role::Wait(mut outcome) => {
                    if let Ok(done) = outcome.wait_for(Option::is_some).await {
                        if let Some(result) = done.as_ref() {
                            return result.clone();
                        }
                    }
                    // The loader gave up before finishing: look again (one waiter takes over).
                }
                Role::Alone => return load().await,
                Role::Load(sender, id) => {
                    let loading = Loading { cache: self, key, id };
                    let result = load().await;
                    {
                        let mut state = self.lock();
                        if let Ok(clip) = &result {
                            state.insert(self.max_bytes, key, clip.clone());
                        }
                        state.loading.remove(key);
                    }
                    drop(loading);
                    sender.send_replace(Some(result.clone()));
                    return result;
                }
            }
        }
    }

    /// `text` spoken by `tts` in `voice`, synthesized once and then kept.
    pub async fn speak(&self, tts: &dyn TextToSpeech, text: &str, voice: &Voice) -> Result<Clip, TtsError> {
        let key = tts_key(tts.name(), text, voice);
        self.get_or_load(&key, || tts.synthesize(text, voice)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(samples: usize) -> Clip {
        Clip::new(vec![1; samples])
    }

    #[test]
    fn least_recently_used_goes_first_and_size_stays_bounded() {
        // Each entry: 1 key byte + 400 sample bytes.
        let cache = AudioCache::new(1000);
        cache.insert("a", clip(200));
        cache.insert("b", clip(200));
        assert!(cache.get("a").is_some()); // b is now the oldest
        cache.insert("c", clip(200));
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!(cache.size_bytes(), 802);
        cache.insert("huge", clip(600)); // larger than the whole cache: not kept, nothing evicted
        assert!(cache.get("huge").is_none());
        assert_eq!(cache.len(), 2);
        cache.insert("a", clip(10)); // replacing counts the new size only
        assert_eq!(cache.size_bytes(), 401 + 21);
    }
}
