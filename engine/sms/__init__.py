"""The SMS channel's own rules, pure: segment counting, phone numbers, carrier keywords,
and the SMS compatibility checks of `canvass check`."""
