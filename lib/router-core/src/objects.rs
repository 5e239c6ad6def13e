//! The API objects a snapshot is built from, as their owner holds them: a
//! slice of owned objects (a configuration file's, the controller's world)
//! or of shared ones (a reflector's store, whose objects are `Arc`s). The
//! gateway in cluster mode builds from its caches without copying every
//! object first, which was a sixth of a rebuild at 10,000 routes.

use std::sync::Arc;

/// A read-only sequence of `K`s, owned or shared.
#[derive(Debug)]
pub enum Objects<'a, K> {
    Owned(&'a [K]),
    Shared(&'a [Arc<K>]),
}

// Derived Clone and Copy would ask the same of K; a pair of slices is always Copy.
impl<K> Clone for Objects<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Objects<'_, K> {}

impl<K> Default for Objects<'_, K> {
    fn default() -> Self {
        Objects::Owned(&[])
    }
}

impl<'a, K> Objects<'a, K> {
    pub fn len(&self) -> usize {
        match self {
            Objects::Owned(o) => o.len(),
            Objects::Shared(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'a, K> {
        match *self {
            Objects::Owned(o) => Iter::Owned(o.iter()),
            Objects::Shared(s) => Iter::Shared(s.iter()),
        }
    }

    /// The objects, each saying whether it is shared.
    pub fn objects(&self) -> impl Iterator<Item = Object<'a, K>> + use<'a, K> {
        let (owned, shared) = match *self {
            Objects::Owned(o) => (o, &[][..]),
            Objects::Shared(s) => (&[][..], s),
        };
        owned.iter().map(Object::Owned).chain(shared.iter().map(Object::Shared))
    }
}

impl<'a, K> From<&'a [K]> for Objects<'a, K> {
    fn from(objects: &'a [K]) -> Self {
        Objects::Owned(objects)
    }
}

impl<'a, K> From<&'a Vec<K>> for Objects<'a, K> {
    fn from(objects: &'a Vec<K>) -> Self {
        Objects::Owned(objects)
    }
}

impl<'a, K, const N: usize> From<&'a [K; N]> for Objects<'a, K> {
    fn from(objects: &'a [K; N]) -> Self {
        Objects::Owned(objects)
    }
}

impl<'a, K> IntoIterator for Objects<'a, K> {
    type Item = &'a K;
    type IntoIter = Iter<'a, K>;

    fn into_iter(self) -> Iter<'a, K> {
        self.iter()
    }
}

/// One object of an [`Objects`]. A shared one can be kept past the build
/// that reads it without a copy (see `snapshot::incremental`).
#[derive(Debug)]
pub enum Object<'a, K> {
    Owned(&'a K),
    Shared(&'a Arc<K>),
}

impl<K> Clone for Object<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Object<'_, K> {}

impl<'a, K> Object<'a, K> {
    pub fn get(self) -> &'a K {
        match self {
            Object::Owned(o) => o,
            Object::Shared(s) => s,
        }
    }

    /// The object's `Arc`, when it is shared.
    pub fn shared(self) -> Option<&'a Arc<K>> {
        match self {
            Object::Owned(_) => None,
            Object::Shared(s) => Some(s),
        }
    }
}

/// The objects of an [`Objects`], by reference.
pub enum Iter<'a, K> {
    Owned(std::slice::Iter<'a, K>),
    Shared(std::slice::Iter<'a, Arc<K>>),
}

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        match self {
            Iter::Owned(i) => i.next(),
            Iter::Shared(i) => i.next().map(|o| &**o),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Owned(i) => i.size_hint(),
            Iter::Shared(i) => i.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_shared_objects_read_alike() {
        let owned = vec![1, 2, 3];
        let shared: Vec<Arc<i32>> = owned.iter().copied().map(Arc::new).collect();
        let (a, b) = (Objects::from(&owned), Objects::Shared(&shared));
        assert_eq!((a.len(), b.len()), (3, 3));
        assert_eq!(a.iter().collect::<Vec<_>>(), b.into_iter().collect::<Vec<_>>());
        assert!(Objects::<i32>::default().is_empty());
        assert!(a.objects().all(|o| o.shared().is_none()));
        assert!(b.objects().zip(&shared).all(|(o, s)| o.shared().is_some_and(|o| Arc::ptr_eq(o, s))));
        assert_eq!(a.objects().map(Object::get).collect::<Vec<_>>(), b.objects().map(Object::get).collect::<Vec<_>>());
    }
}
