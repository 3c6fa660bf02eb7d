"""What an image is, whatever carries it: the accepted formats, the variants, the record
and its states, the errors. Imports neither the HTTP framework nor boto3."""
