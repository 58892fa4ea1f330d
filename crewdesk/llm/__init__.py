"""Model providers behind crewai.BaseLLM: local (llama.cpp), OpenAI-compatible, Anthropic, scripted."""
