//! Stands in for `certgate::upstream`: only the `Health` table `config` creates.

pub mod health {
    /// Per-server health in certgate; here only its size.
    #[derive(Debug)]
    pub struct Health {
        pub servers: usize,
    }

    impl Health {
        pub fn new(servers: usize) -> Health {
            Health { servers }
        }
    }
}
