"""What every part stands on: the database and its models, API keys, secrets, prices, the OpenAI client."""
