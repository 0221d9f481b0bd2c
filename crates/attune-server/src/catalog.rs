//! Registered packs and their actions, in memory, loaded from the store's pack bundles
//! (unpacked once into a content-addressed cache directory).

use attune_core::bundle::Bundle;
use attune_core::{Action, Pack};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A pack that passed validation, with its actions.
#[derive(Debug, Clone)]
pub struct LoadedPack {
    /// Metadata.
    pub pack: Pack,
    /// Content digest.
    pub digest: String,
    /// Registration time.
    pub registered_at: String,
    /// Actions by name.
    pub actions: BTreeMap<String, Arc<Action>>,
}

/// All registered packs.
#[derive(Debug)]
pub struct Catalog {
    cache: PathBuf,
    shared: bool,
    packs: RwLock<BTreeMap<String, LoadedPack>>,
    /// Bumped by every insert and remove, under the write lock.
    generation: std::sync::atomic::AtomicU64,
}

impl Catalog {
    /// An empty catalog whose packs unpack under `cache`; `shared`: readable by the run-as
    /// user too.
    pub fn new(cache: PathBuf, shared: bool) -> Catalog {
        Catalog {
            cache,
            shared,
            packs: RwLock::new(BTreeMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Unpacks and fully validates a bundle, as registration does. Errors name the file and
    /// key, relative to the pack. Only a bundle compiled into the binary (`bundled`) may be
    /// the `core` pack. `digest` must be the bundle's (callers that read it from the store
    /// check it first).
    pub fn load(
        &self,
        bundle: &Bundle,
        digest: &str,
        registered_at: &str,
        bundled: bool,
    ) -> Result<LoadedPack, String> {
        let dir = self.cache.join(digest);
        let fresh = if std::fs::symlink_metadata(&dir).is_ok() {
            // The cache is read-only, but a copy someone managed to change must never run.
            if let Some(diff) = bundle.differs_from_dir(&dir) {
                return Err(format!(
                    "its unpacked copy in the pack cache does not match digest {digest} ({diff}); refusing to load it. Remove {digest} from the pack cache to have it unpacked again from the database"
                ));
            }
            false
        } else {
            bundle
                .unpack_to(&dir, self.shared)
                .map_err(|e| e.to_string())?;
            true
        };
        let relative = |msg: String| msg.replace(&format!("{}/", dir.display()), "");
        let loaded = Pack::open(&dir)
            .map_err(|e| relative(e.to_string()))
            .and_then(|pack| {
                if pack.pack_ref == "core" && !bundled {
                    return Err("a pack may not call itself `core`: the bundled core pack cannot be replaced".to_string());
                }
                let actions = pack.load_actions().map_err(|e| relative(e.to_string()))?;
                Ok((actions, pack))
            });
        let (actions, pack) = match loaded {
            Ok(x) => x,
            Err(e) => {
                // A failed registration leaves nothing in the cache.
                if fresh {
                    attune_core::bundle::remove_read_only_tree(&dir);
                }
                return Err(e);
            }
        };
        Ok(LoadedPack {
            digest: digest.to_string(),
            registered_at: registered_at.to_string(),
            actions: actions
                .into_iter()
                .map(|a| (a.name.clone(), Arc::new(a)))
                .collect(),
            pack,
        })
    }

    /// Adds or replaces a pack.
    pub fn insert(&self, p: LoadedPack) {
        if let Ok(mut packs) = self.packs.write() {
            packs.insert(p.pack.pack_ref.clone(), p);
            self.bump();
        }
    }

    /// Removes a pack.
    pub fn remove(&self, pack_ref: &str) -> bool {
        self.packs
            .write()
            .map(|mut p| {
                self.bump();
                p.remove(pack_ref).is_some()
            })
            .unwrap_or(false)
    }

    /// How many times the catalog has changed: taken before reading the stored packs, it
    /// tells whether a registration may have happened since.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Removes a pack only if the catalog has not changed since `generation`: a pack
    /// registered after the caller read the stored packs is not taken out again.
    pub fn remove_unless_changed(&self, pack_ref: &str, generation: u64) -> bool {
        self.packs
            .write()
            .map(|mut p| {
                if self.generation() != generation {
                    return false;
                }
                self.bump();
                p.remove(pack_ref).is_some()
            })
            .unwrap_or(false)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The action `<pack>.<name>`.
    pub fn action(&self, action_ref: &str) -> Option<Arc<Action>> {
        let (pack, name) = action_ref.split_once('.')?;
        self.packs
            .read()
            .ok()?
            .get(pack)?
            .actions
            .get(name)
            .cloned()
    }

    /// Every action, by ref.
    pub fn actions(&self) -> Vec<Arc<Action>> {
        self.packs
            .read()
            .map(|p| {
                p.values()
                    .flat_map(|lp| lp.actions.values().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every pack.
    pub fn packs(&self) -> Vec<LoadedPack> {
        self.packs
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }
}
