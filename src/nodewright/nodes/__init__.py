"""The node domain: create (intent + job in one transaction), provision, release, reconcile.

After the acquire stage everything here is provider-agnostic: the provider contract hands back an
SSH target, and connect, provision and verify run on it alone.
"""
