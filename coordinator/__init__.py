"""The study coordinator: prepare a study, put it on the chain, provision hospitals, the `fedledger` CLI."""
