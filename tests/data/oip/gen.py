# Writes tests/data/oip/cases/ (run it after changing a case; not part of the
# build; python3 tests/data/oip/gen.py).  Each case's
# files.  Expected FP16/BF16 answers come from Python's struct ('e' is IEEE
# binary16, rounded to nearest even) and a bfloat16 rounding written here
# independently of kinfer's C code.
import os, struct, json, shutil
root = os.path.dirname(os.path.abspath(__file__))
cases = root + '/cases'
shutil.rmtree(cases, ignore_errors=True)
os.makedirs(cases)
for v in ('1', '2'):
    os.makedirs(f'{root}/models/scale/{v}', exist_ok=True)
    open(f'{root}/models/scale/{v}/config.json', 'w').write('{"backend": "scale"}\n')
os.makedirs(f'{root}/models/flat', exist_ok=True)
open(f'{root}/models/flat/config.json', 'w').write('{"backend": "scale", "version": "7"}\n')

def case(name, request, result=None, error=None, binary=None, result_binary=None):
    d = f'{cases}/{name}'
    os.makedirs(d)
    if not isinstance(request, str):
        request = json.dumps(request, separators=(',', ':'))
    open(d + '/request', 'w').write(request + '\n')
    if binary is not None:
        open(d + '/request-binary', 'w').write(binary.hex(' ') + '\n')
    if result is not None:
        open(d + '/result', 'w').write(result + '\n')
    if error is not None:
        open(d + '/error', 'w').write(error + '\n')
    if result_binary is not None:
        open(d + '/result-binary', 'w').write(result_binary.hex(' ') + '\n')

def req(dtype, shape, data, name='x', **kw):
    r = {'id': 't', 'parameters': {'factor': 1}}
    r.update(kw)
    r['inputs'] = [{'name': name, 'shape': shape, 'datatype': dtype, 'data': data}]
    return r

def res(dtype, shape, data_text, name='x', version='2', model='scale'):
    return ('{"id":"t","model_name":"%s","model_version":"%s","outputs":[{"name":"%s","shape":%s,"datatype":"%s","data":[%s]}]}'
            % (model, version, name, json.dumps(shape, separators=(',', ':')), dtype, data_text))

# --- integers: every type's extremes pass, one beyond fails ----------------
ints = {'UINT8': (0, 255), 'UINT16': (0, 65535), 'UINT32': (0, 4294967295),
        'UINT64': (0, 18446744073709551615), 'INT8': (-128, 127),
        'INT16': (-32768, 32767), 'INT32': (-2147483648, 2147483647),
        'INT64': (-9223372036854775808, 9223372036854775807)}
for t, (lo, hi) in ints.items():
    n = t.lower()
    text = '%d,%d,1' % (lo, hi)
    case(f'{n}-extremes', '{"id":"t","parameters":{"factor":1},"inputs":[{"name":"x","shape":[3],"datatype":"%s","data":[%s]}]}' % (t, text),
         result=res(t, [3], text))
    if t not in ('INT64', 'UINT64'):
        case(f'{n}-above', req(t, [2], [0, hi + 1]),
             error=f'inputs[0].data[1]: integer {hi + 1} is out of range for {t}')
        if lo < 0:
            case(f'{n}-below', req(t, [1], [lo - 1]),
                 error=f'inputs[0].data[0]: integer {lo - 1} is out of range for {t}')
    if lo == 0:
        case(f'{n}-negative', req(t, [1], [-1]),
             error=f'inputs[0].data[0]: integer -1 is out of range for {t}')
    case(f'{n}-real-refused', req(t, [1], [1.5]),
         error=f'inputs[0].data[0]: expected an integer for {t}, got 1.5')
# the protocol's own example request (UINT32), with the default factor 2
case('uint32-spec-example',
     '{"id":"42","inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},'
     '{"name":"input1","shape":[3],"datatype":"BOOL","data":[true]}],"outputs":[{"name":"output0"}]}',
     error='inputs[1].data: expected 3 elements for shape [3], got 1')
case('uint32-doubled', req('UINT32', [2, 2], [[1, 2], [3, 4]], parameters={}),
     result=res('UINT32', [2, 2], '2,4,6,8'))
case('uint8-doubled-overflows', req('UINT8', [2], [100, 200], parameters={}),
     error="input 'x': the result does not fit: element 1: INT64 400 is out of range for UINT8")
case('uint64-doubled-overflows', '{"id":"t","inputs":[{"name":"x","shape":[1],"datatype":"UINT64","data":[9223372036854775808]}]}',
     error="input 'x': result overflows UINT64")
case('uint64-beyond', '{"id":"t","inputs":[{"name":"x","shape":[1],"datatype":"UINT64","data":[18446744073709551616]}]}',
     error='request is not valid JSON: too big integer')
case('int8-factor-real', req('INT8', [1], [3], parameters={'factor': 0.5}),
     error="parameters.factor: must be an integer for INT8 input 'x', got 0.5")

# --- FP16 and BF16 ------------------------------------------------------------
def fp16(x):
    try:
        return struct.unpack('<e', struct.pack('<e', x))[0]
    except OverflowError:
        return float('inf')

def bf16(x):
    # round the double to 8 significant bits, ties to even: bfloat16
    import math
    if x == 0 or math.isinf(x):
        return x
    m, e = math.frexp(x)          # x = m * 2^e, 0.5 <= |m| < 1
    e = max(e, -125)              # subnormals keep a fixed step
    step = 2.0 ** (e - 8)
    q = x / step
    r = round(q)                  # Python's round: ties to even
    return r * step

def shortest(x, conv):
    # fewest significant digits that read back (through conv) as x
    if x == 0:
        return '-0.0' if str(x).startswith('-') else '0'
    for p in range(1, 18):
        t = '%.*e' % (p - 1, x)
        if conv(float(t)) == x:
            v = float(t)
            break
    r = repr(v)
    if r.endswith('.0'):
        r = r[:-2]
    if 'e' in r:
        mant, ex = r.split('e')
        ex = int(ex)
        r = '%se%s%02d' % (mant, '-' if ex < 0 else '+', abs(ex))
    return r

fp16_in = ['0.1', '65504', '-0.0', '6e-08', '1', '1.00048828125', '1.00146484375', '0.333333333', '-2.5e-05']
vals = [fp16(float(t)) for t in fp16_in]
case('fp16-values', '{"id":"t","parameters":{"factor":1},"inputs":[{"name":"x","shape":[9],"datatype":"FP16","data":[%s]}]}' % ','.join(fp16_in),
     result=res('FP16', [9], ','.join(shortest(v, fp16) for v in vals)))
case('fp16-largest-rounds-down', req('FP16', [1], [65519.99]), result=res('FP16', [1], '65500'))
case('fp16-beyond-range', req('FP16', [2], [1, 65520.5]),
     error='inputs[0].data[1]: value 65520.5 is out of range for FP16')
case('fp16-integer-at-limit', req('FP16', [2], [1, 65520]),
     error='inputs[0].data[1]: integer 65520 is out of range for FP16')
case('fp16-integer-beyond-range', req('FP16', [1], [-70000]),
     error='inputs[0].data[0]: integer -70000 is out of range for FP16')
case('fp16-doubled-overflows', req('FP16', [1], [40000], parameters={}),
     error="input 'x': the result does not fit: element 0: FP64 80000 is out of range for FP16")
bf_in = ['3.14159', '1e+38', '-2.5', '0.1', '3.3895313892515355e+38', '1e-40']
vals = [bf16(float(t)) for t in bf_in]
case('bf16-values', '{"id":"t","parameters":{"factor":1},"inputs":[{"name":"x","shape":[2,3],"datatype":"BF16","data":[%s]}]}' % ','.join(bf_in),
     result=res('BF16', [2, 3], ','.join(shortest(v, bf16) for v in vals)))
case('bf16-beyond-range', req('BF16', [1], [3.4e38]),
     error='inputs[0].data[0]: value 3.4e+38 is out of range for BF16')
case('fp32-values', req('FP32', [3], [0.1, 3.4028235e38, -1e-45]), result=res('FP32', [3], '0.1,3.4028235e+38,-1e-45'))
case('fp64-values', req('FP64', [2], [0.1, 1e308]), result=res('FP64', [2], '0.1,1e+308'))
case('bool-named-types', req('BOOL', [1], [True]),
     error="input 'x': scale takes numbers (UINT8 .. UINT64, INT8 .. INT64, FP16, BF16, FP32, FP64), not BOOL")
case('bytes-named-types', req('BYTES', [1], ['a']),
     error="not BYTES")
case('bool-number-refused', req('BOOL', [1], [1]),
     error='inputs[0].data[0]: expected true or false for BOOL, got 1')
case('datatype-unknown', req('FP8', [1], [1]), error="inputs[0].datatype: unknown datatype 'FP8'")
case('datatype-lower-case', req('fp16', [1], [1]), error="inputs[0].datatype: unknown datatype 'fp16'")

# --- outputs -------------------------------------------------------------------
two = {'id': 't', 'parameters': {'factor': 1}, 'inputs': [
    {'name': 'a', 'shape': [1], 'datatype': 'INT32', 'data': [1]},
    {'name': 'b', 'shape': [1], 'datatype': 'INT32', 'data': [2]}]}
def with_outputs(outs, **kw):
    r = dict(two); r.update(kw); r['outputs'] = outs
    return r
case('outputs-all-when-absent', two,
     result='{"id":"t","model_name":"scale","model_version":"2","outputs":[{"name":"a","shape":[1],"datatype":"INT32","data":[1]},{"name":"b","shape":[1],"datatype":"INT32","data":[2]}]}')
case('outputs-filter', with_outputs([{'name': 'b'}]),
     result='{"id":"t","model_name":"scale","model_version":"2","outputs":[{"name":"b","shape":[1],"datatype":"INT32","data":[2]}]}')
case('outputs-order-of-request', with_outputs([{'name': 'b'}, {'name': 'a', 'parameters': {'binary_data': False}}]),
     result='{"id":"t","model_name":"scale","model_version":"2","outputs":[{"name":"b","shape":[1],"datatype":"INT32","data":[2]},{"name":"a","shape":[1],"datatype":"INT32","data":[1]}]}')
case('outputs-empty-means-all', with_outputs([]),
     result='{"id":"t","model_name":"scale","model_version":"2","outputs":[{"name":"a","shape":[1],"datatype":"INT32","data":[1]},{"name":"b","shape":[1],"datatype":"INT32","data":[2]}]}')
case('outputs-unknown-name', with_outputs([{'name': 'a'}, {'name': 'z'}]),
     error="outputs[1].name: model 'scale' has no output 'z' (its outputs: a, b)")
case('outputs-twice', with_outputs([{'name': 'a'}, {'name': 'a'}]),
     error="outputs[1].name: output 'a' is asked for twice")
case('outputs-name-missing', with_outputs([{'parameters': {}}]), error='outputs[0].name: missing')
case('outputs-not-array', with_outputs({'name': 'a'}), error='outputs: expected an array')
case('outputs-parameter-object', with_outputs([{'name': 'a', 'parameters': {'x': {}}}]),
     error='outputs[0].parameters.x: expected a string, number or boolean, got an object')
case('binary-data-output-not-bool', req('INT32', [1], [1], parameters={'factor': 1, 'binary_data_output': 'yes'}),
     error='parameters.binary_data_output: expected true or false')
case('outputs-binary-data-not-bool', with_outputs([{'name': 'a', 'parameters': {'binary_data': 1}}]),
     error='outputs[0].parameters.binary_data: expected true or false')

# --- model_version ------------------------------------------------------------
case('version-newest-by-default', req('INT32', [1], [5]), result=res('INT32', [1], '5'))
case('version-1', req('INT32', [1], [5], model_version='1'), result=res('INT32', [1], '5', version='1'))
case('version-2', req('INT32', [1], [5], model_name='scale', model_version='2'), result=res('INT32', [1], '5', version='2'))
case('version-missing', req('INT32', [1], [5], model_version='7'),
     error="model_version: model 'scale' has no version '7' (it serves: 1, 2)")
case('version-flat-from-config', req('INT32', [1], [5], model_name='flat', model_version='7'),
     result=res('INT32', [1], '5', version='7', model='flat'))
case('version-flat-missing', req('INT32', [1], [5], model_name='flat', model_version='1'),
     error="model_version: model 'flat' has no version '1' (it serves: 7)")
case('version-not-string', req('INT32', [1], [5], model_version=2), error='model_version: expected a string')
case('model-unknown', req('INT32', [1], [5], model_name='resnet'),
     error="model_name: unknown model 'resnet' (this worker serves: flat, scale)")

# --- errors do not invent a model ---------------------------------------------
case('unparsable-names-no-model', 'this is not JSON',
     result='{"error":"request is not valid JSON: invalid token near \'this\' at line 1 column 4"}')
case('undecodable-names-its-model', '{"id":"e","model_name":"flat","inputs":[]}',
     result='{"id":"e","model_name":"flat","error":"inputs: expected at least one input"}')
case('undecodable-without-model', '{"id":"e","inputs":"x"}',
     result='{"id":"e","error":"inputs: expected an array"}')

# --- parameters ---------------------------------------------------------------
case('parameters-object-refused', req('INT32', [1], [1], parameters={'factor': 1, 'cfg': {'a': 1}}),
     error='parameters.cfg: expected a string, number or boolean, got an object')
case('parameters-array-refused', req('INT32', [1], [1], parameters={'factor': [1]}),
     error='parameters.factor: expected a string, number or boolean, got an array')
r = req('INT32', [1], [7]); r['inputs'][0]['parameters'] = {'content_type': 'np', 'note': True}
case('input-content-type', r, result=res('INT32', [1], '7'))
r = req('INT32', [1], [7]); r['inputs'][0]['parameters'] = {'content_type': 3}
case('input-content-type-not-string', r, error='inputs[0].parameters.content_type: expected a string')
r = req('INT32', [1], [7]); r['inputs'][0]['parameters'] = {'shape_hint': [1]}
case('input-parameter-array', r, error='inputs[0].parameters.shape_hint: expected a string, number or boolean, got an array')

# --- the binary tensor extension ---------------------------------------------
def breq(inputs, **kw):
    r = {'id': 'b', 'parameters': {'factor': 1}}
    r['parameters'].update(kw.pop('params', {}))
    r.update(kw)
    r['inputs'] = inputs
    return json.dumps(r, separators=(',', ':'))
img = bytes([0, 1, 127, 128, 254, 255])
case('binary-uint8-in-json-out', breq([{'name': 'img', 'shape': [1, 2, 3], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 6}}]),
     binary=img,
     result='{"id":"b","model_name":"scale","model_version":"2","outputs":[{"name":"img","shape":[1,2,3],"datatype":"UINT8","data":[0,1,127,128,254,255]}]}')
case('binary-uint8-out', breq([{'name': 'img', 'shape': [6], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 6}}], params={'binary_data_output': True}),
     binary=img,
     result='{"id":"b","model_name":"scale","model_version":"2","outputs":[{"name":"img","shape":[6],"datatype":"UINT8","parameters":{"binary_data_size":6}}]}',
     result_binary=img)
f32 = struct.pack('<3f', 0.5, -1.25, 3e38)
case('binary-fp32-in-and-out', breq([{'name': 'x', 'shape': [3], 'datatype': 'FP32', 'parameters': {'binary_data_size': 12}}],
                                    outputs=[{'name': 'x', 'parameters': {'binary_data': True}}]),
     binary=f32,
     result='{"id":"b","model_name":"scale","model_version":"2","outputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}',
     result_binary=f32)
h = struct.pack('<2e', 0.1, -65504.0)
case('binary-fp16', breq([{'name': 'x', 'shape': [2], 'datatype': 'FP16', 'parameters': {'binary_data_size': 4}}]),
     binary=h,
     result=res('FP16', [2], '0.1,-65500').replace('"id":"t"', '"id":"b"'))
# per-output binary_data wins over binary_data_output; JSON and binary mixed
mixed = breq([{'name': 'a', 'shape': [2], 'datatype': 'INT16', 'parameters': {'binary_data_size': 4}},
              {'name': 'b', 'shape': [1], 'datatype': 'INT64', 'data': [-3]}],
             params={'binary_data_output': True}, outputs=[{'name': 'a'}, {'name': 'b', 'parameters': {'binary_data': False}}])
case('binary-mixed', mixed, binary=struct.pack('<2h', -2, 300),
     result='{"id":"b","model_name":"scale","model_version":"2","outputs":[{"name":"a","shape":[2],"datatype":"INT16","parameters":{"binary_data_size":4}},{"name":"b","shape":[1],"datatype":"INT64","data":[-3]}]}',
     result_binary=struct.pack('<2h', -2, 300))
case('binary-two-inputs-in-order', breq([{'name': 'a', 'shape': [1], 'datatype': 'UINT16', 'parameters': {'binary_data_size': 2}},
                                         {'name': 'b', 'shape': [1], 'datatype': 'UINT32', 'parameters': {'binary_data_size': 4}}]),
     binary=struct.pack('<HI', 513, 67305985),
     result='{"id":"b","model_name":"scale","model_version":"2","outputs":[{"name":"a","shape":[1],"datatype":"UINT16","data":[513]},{"name":"b","shape":[1],"datatype":"UINT32","data":[67305985]}]}')
case('binary-size-wrong-for-shape', breq([{'name': 'x', 'shape': [4], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 3}}]),
     binary=b'\x01\x02\x03', error='inputs[0].parameters.binary_data_size: 3 bytes, but shape [4] of UINT8 takes 4')
case('binary-past-the-end', breq([{'name': 'x', 'shape': [4], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 4}}]),
     binary=b'\x01\x02', error='inputs[0].parameters.binary_data_size: 4 bytes, but only 2 of the 2 after the JSON header are left')
case('binary-without-header-length', breq([{'name': 'x', 'shape': [1], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 1}}]),
     error='(was the header length sent?)')
case('binary-bytes-left-over', breq([{'name': 'x', 'shape': [1], 'datatype': 'UINT8', 'parameters': {'binary_data_size': 1}}]),
     binary=b'\x01\x02', error='binary data: 2 bytes follow the JSON header, but the inputs\' binary_data_size add up to 1')
case('binary-and-data', breq([{'name': 'x', 'shape': [1], 'datatype': 'UINT8', 'data': [1], 'parameters': {'binary_data_size': 1}}]),
     binary=b'\x01', error='inputs[0]: both data and parameters.binary_data_size; send one')
case('binary-size-negative', breq([{'name': 'x', 'shape': [1], 'datatype': 'UINT8', 'parameters': {'binary_data_size': -1}}]),
     error='inputs[0].parameters.binary_data_size: expected a non-negative integer')
case('binary-bool-not-0-or-1', breq([{'name': 'x', 'shape': [2], 'datatype': 'BOOL', 'parameters': {'binary_data_size': 2}}]),
     binary=b'\x01\x02', error='inputs[0]: binary BOOL element 1 is 2, not 0 or 1')
case('binary-bytes-length-past-end', breq([{'name': 'x', 'shape': [1], 'datatype': 'BYTES', 'parameters': {'binary_data_size': 6}}]),
     binary=struct.pack('<I', 5) + b'ab', error='inputs[0]: binary BYTES element 0: 5 bytes, past the 6 bytes of binary_data_size')
print(len(os.listdir(cases)), 'cases')
