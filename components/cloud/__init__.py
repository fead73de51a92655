"""The Google Cloud security layer: identities, secrets, buckets, and the one IAM shape they grant
access in."""
