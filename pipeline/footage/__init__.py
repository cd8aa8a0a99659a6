"""The user's footage: finding clips, decoding and writing frames, cutting triplet windows and splits, and
reading the triplets that ``extract`` stored."""
