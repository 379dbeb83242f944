"""Audio: decoding and writing files, signal helpers, preparation, features, augmentation, the decoded-audio cache."""
