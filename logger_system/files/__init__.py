"""Log files on disk: their formats (plaintext, sealed), the rules a sequence of them obeys
(chain.py: the one judge that verify, cat, cat --follow and the writer's resume all ask),
rotation and retention, and reading them back."""
